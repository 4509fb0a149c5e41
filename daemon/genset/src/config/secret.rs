//! A secret value (an upstream API key): never printed, never serialized.

use std::fmt;

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The value itself, for the one place that sends it to its upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The last four characters, the most a person is ever shown.
    pub fn last4(&self) -> String {
        let n = self.0.chars().count();
        let tail: String = self.0.chars().skip(n.saturating_sub(4)).collect();
        format!("…{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn debug_hides_value() {
        let s = Secret::new("sk-verysecret1234".into());
        assert_eq!(format!("{s:?}"), "Secret(*****)");
        assert_eq!(s.last4(), "…1234");
    }
}
