//! Small helpers shared across modules.

/// An error and its sources, joined, for logs and messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Lowercase hex of a short digest, table-driven (`hex::encode` goes char by char, which
/// showed in the request path's profile: every passthrough request hashes the client's key).
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_lower_matches_the_hex_crate() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(super::hex_lower(&all), hex::encode(&all));
        assert_eq!(super::hex_lower(&[]), "");
    }
}
