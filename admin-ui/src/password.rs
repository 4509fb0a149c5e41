//! Passwords: argon2id (OWASP parameters by default), length 12..=128 characters.
//! Hashing runs on the blocking pool: it takes tens of milliseconds on purpose.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Version};

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params { m_kib: 19456, t: 2, p: 1 }
    }
}

fn argon(p: Params) -> Result<Argon2<'static>, String> {
    let params = argon2::Params::new(p.m_kib, p.t, p.p, None).map_err(|e| format!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Why a new password is refused; `None` when it is acceptable.
pub fn policy_error(password: &str, username: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Some(format!("the password must have at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Some(format!("the password must have at most {MAX_LEN} characters"));
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Some("the password must not contain the user name".into());
    }
    None
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_blocking(password: &str, p: Params) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon(p)?.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| format!("argon2: {e}"))
}

/// Checks `password` against a stored PHC string (the parameters come from the string).
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN * 4 {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

pub async fn hash(password: String, p: Params) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password, p)).await.map_err(|e| format!("hashing task: {e}"))?
}

/// Verify; with no stored hash (unknown user) a dummy hash is checked so the answer takes as
/// long as for a real user.
pub async fn verify(password: String, phc: Option<String>, p: Params) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_blocking(&password, &phc),
        None => {
            let _ = hash_blocking(&password, p);
            false
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(policy_error("short", "a").is_some());
        assert!(policy_error(&"x".repeat(129), "a").is_some());
        assert!(policy_error("correct horse battery", "admin").is_none());
        assert!(policy_error("admin-password-1", "admin").is_some());
        assert!(policy_error(&"é".repeat(12), "a").is_none());
    }

    #[test]
    fn hash_and_verify() {
        let p = Params { m_kib: 1024, t: 1, p: 1 };
        let h = hash_blocking("correct horse battery", p).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{h}");
        assert!(verify_blocking("correct horse battery", &h));
        assert!(!verify_blocking("correct horse batterY", &h));
        assert!(!verify_blocking("x", "not a hash"));
        let d = hash_blocking("x", Params::default()).unwrap();
        assert!(d.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{d}");
    }
}
