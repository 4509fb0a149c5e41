//! Client authentication: the client's own key (passthrough: genset keeps only a salted hash
//! of keys the cloud accepted) or a genset-issued virtual key mapped to the appliance's
//! upstream credential. Keys themselves are never stored or logged.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::store::VirtualKeyRow;

/// Prefix of genset-issued virtual keys.
pub const VIRTUAL_KEY_PREFIX: &str = "gk-";

#[derive(Debug, Clone)]
pub struct VirtualKey {
    pub id: Arc<str>,
    pub name: String,
    pub use_case: Option<String>,
    pub upstream: Option<String>,
}

/// The install's salt and the live virtual keys, looked up on the request path.
pub struct KeyBook {
    salt: Vec<u8>,
    virtual_keys: RwLock<HashMap<String, VirtualKey>>,
    /// Salted hashes of passthrough keys the cloud accepted, with when it last did.
    accepted: RwLock<HashMap<String, i64>>,
}

impl KeyBook {
    pub fn new(salt_hex: &str, rows: &[VirtualKeyRow]) -> Self {
        let salt = hex::decode(salt_hex).unwrap_or_else(|_| salt_hex.as_bytes().to_vec());
        let book = KeyBook { salt, virtual_keys: RwLock::new(HashMap::new()), accepted: RwLock::new(HashMap::new()) };
        for r in rows.iter().filter(|r| r.revoked_ms.is_none()) {
            book.insert(r);
        }
        book
    }

    /// A fresh random salt, hex.
    pub fn new_salt() -> String {
        let mut b = [0u8; 32];
        rand::rng().fill(&mut b);
        hex::encode(b)
    }

    /// Salted sha256 of a key, hex: what is stored about a client's key.
    pub fn hash(&self, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(&self.salt);
        h.update(key.as_bytes());
        crate::util::hex_lower(&h.finalize())
    }

    /// Remember that the cloud accepted this (hashed) client key at `ts_ms`. Cheap when the
    /// key is already known as recently accepted (a read lock only).
    pub fn note_accepted(&self, hash: &str, ts_ms: i64) {
        if self.accepted.read().get(hash).is_some_and(|t| ts_ms - *t < 60_000) {
            return;
        }
        self.accepted.write().insert(hash.to_string(), ts_ms);
    }

    /// Whether the cloud accepted this (hashed) client key since `since_ms`: what lets a
    /// passthrough client use the local engine while the cloud is gone.
    pub fn was_accepted(&self, hash: &str, since_ms: i64) -> bool {
        self.accepted.read().get(hash).is_some_and(|t| *t >= since_ms)
    }

    /// Load the accepted keys the store remembers.
    pub fn load_accepted(&self, rows: impl IntoIterator<Item = (String, i64)>) {
        let mut m = self.accepted.write();
        for (h, t) in rows {
            let e = m.entry(h).or_insert(t);
            *e = (*e).max(t);
        }
    }

    pub fn lookup(&self, key: &str) -> Option<VirtualKey> {
        let h = self.hash(key);
        self.virtual_keys.read().get(&h).cloned()
    }

    pub fn insert(&self, r: &VirtualKeyRow) {
        self.virtual_keys.write().insert(
            r.key_hash.clone(),
            VirtualKey { id: Arc::from(r.id.as_str()), name: r.name.clone(), use_case: r.use_case.clone(), upstream: r.upstream.clone() },
        );
    }

    pub fn remove(&self, id: &str) {
        self.virtual_keys.write().retain(|_, v| &*v.id != id);
    }

    /// Issue a new key: returns the row to store and the key, shown to its owner once.
    pub fn issue(&self, name: &str, use_case: Option<String>, upstream: Option<String>, now_ms: i64) -> (VirtualKeyRow, String) {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let secret: String = (0..40).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
        let key = format!("{VIRTUAL_KEY_PREFIX}{secret}");
        let id_bytes: [u8; 8] = rng.random();
        let row = VirtualKeyRow {
            id: format!("vk_{}", hex::encode(id_bytes)),
            name: name.to_string(),
            use_case,
            upstream,
            key_hash: self.hash(&key),
            last4: key[key.len() - 4..].to_string(),
            created_ms: now_ms,
            revoked_ms: None,
        };
        (row, key)
    }
}

/// Plain sha256 of a key, hex: what `match.api_key_sha256` rules compare with.
pub fn plain_sha256(key: &str) -> String {
    crate::util::hex_lower(&Sha256::digest(key.as_bytes()))
}

/// Constant-time comparison for bearer tokens.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_lookup_revoke() {
        let book = KeyBook::new(&KeyBook::new_salt(), &[]);
        let (row, key) = book.issue("ci", Some("triage".into()), None, 1);
        assert!(key.starts_with("gk-") && key.len() == 43);
        assert_ne!(row.key_hash, plain_sha256(&key), "stored hash is salted");
        assert!(book.lookup(&key).is_none(), "not live until inserted");
        book.insert(&row);
        assert_eq!(book.lookup(&key).map(|v| v.use_case), Some(Some("triage".into())));
        assert!(book.lookup("gk-wrong").is_none());
        book.remove(&row.id);
        assert!(book.lookup(&key).is_none());
        let other = KeyBook::new(&KeyBook::new_salt(), &[]);
        assert_ne!(other.hash(&key), book.hash(&key), "salts differ per install");
    }
}
