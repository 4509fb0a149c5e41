//! Realistic-looking, unique identifiers (`chatcmpl-…`, `msg_01…`) built on
//! the stack, without allocating.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::answer::{FNV_OFFSET, fnv1a};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CAP: usize = 48;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static SEED: OnceLock<u64> = OnceLock::new();

/// splitmix64: a tiny, well-mixed step used both for ids and for the
/// deterministic answer generator.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn seed() -> u64 {
    *SEED.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        splitmix64(nanos ^ u64::from(std::process::id()).rotate_left(32))
    })
}

/// An identifier made of a fixed prefix and `n` random base62 characters.
#[derive(Clone, Copy)]
pub(crate) struct Id {
    buf: [u8; CAP],
    len: usize,
}

impl Id {
    pub(crate) fn new(prefix: &str, random_chars: usize) -> Self {
        Self::from_state(prefix, random_chars, seed() ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// The same identifier for the same `key`: the simulator's `stable_ids` mode, where two
    /// identical requests get byte-identical answers.
    pub(crate) fn derived(prefix: &str, random_chars: usize, key: u64) -> Self {
        Self::from_state(prefix, random_chars, key)
    }

    fn from_state(prefix: &str, random_chars: usize, mut rng: u64) -> Self {
        let mut buf = [0u8; CAP];
        let prefix = &prefix.as_bytes()[..prefix.len().min(CAP)];
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut len = prefix.len();
        let mut bits = 0u64;
        let mut left = 0u32;
        for _ in 0..random_chars.min(CAP - len) {
            if left == 0 {
                rng = splitmix64(rng);
                bits = rng;
                left = 10; // 62^10 < 2^64: ten digits per draw
            }
            buf[len] = ALPHABET[(bits % 62) as usize];
            bits /= 62;
            left -= 1;
            len += 1;
        }
        Self { buf, len }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII from the prefix (a &str) and ALPHABET is ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `created` time of every answer in `stable_ids` mode (2023-11-14T22:13:20Z).
pub(crate) const STABLE_CREATED: u64 = 1_700_000_000;

/// FNV-1a over the parts: the key of a request in `stable_ids` mode.
pub(crate) fn request_key(parts: &[&[u8]]) -> u64 {
    parts.iter().fold(FNV_OFFSET, |h, part| fnv1a(fnv1a(h, part), &[0xff]))
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_length_and_differ() {
        let a = Id::new("chatcmpl-", 29);
        let b = Id::new("chatcmpl-", 29);
        assert!(a.as_str().starts_with("chatcmpl-"));
        assert_eq!(a.as_str().len(), 9 + 29);
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.as_str()[9..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn derived_ids_follow_the_key() {
        let k = request_key(&[b"/v1/chat/completions", b"{}"]);
        assert_eq!(Id::derived("chatcmpl-", 29, k).as_str(), Id::derived("chatcmpl-", 29, k).as_str());
        assert_ne!(Id::derived("chatcmpl-", 29, k).as_str(), Id::derived("chatcmpl-", 29, k ^ 1).as_str());
        assert_ne!(k, request_key(&[b"/v1/chat/completions", b"{} "]));
        assert_ne!(request_key(&[b"ab", b"c"]), request_key(&[b"a", b"bc"]));
        assert_eq!(Id::derived("msg_01", 22, k).as_str().len(), 6 + 22);
    }
}
