//! Redaction before storage (`recording.redact`). `pii` replaces e-mail addresses, phone,
//! payment-card (Luhn-checked) and IBAN (mod-97-checked) numbers, bearer tokens and API keys
//! with placeholders that keep the JSON valid; `hash-only` keeps only the body's sha256.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};
use sha2::{Digest, Sha256};

use crate::config::RedactMode;

#[allow(clippy::expect_used)] // the patterns are constants, checked by the tests
fn re(p: &str) -> Regex {
    Regex::new(p).expect("constant regex")
}

const BEARER_P: &str = r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}";
const API_KEY_P: &str = r"\b(?:sk|gk|rk|pk)-[A-Za-z0-9_-]{16,}";
const EMAIL_P: &str = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}";
const IBAN_P: &str = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b";
const CARD_P: &str = r"\b\d(?:[ -]?\d){12,18}\b";
const PHONE_P: &str = r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}\b|\+\d{8,15}\b";

static BEARER: LazyLock<Regex> = LazyLock::new(|| re(BEARER_P));
static API_KEY: LazyLock<Regex> = LazyLock::new(|| re(API_KEY_P));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| re(EMAIL_P));
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(IBAN_P));
static CARD: LazyLock<Regex> = LazyLock::new(|| re(CARD_P));
static PHONE: LazyLock<Regex> = LazyLock::new(|| re(PHONE_P));

/// All six patterns in one automaton, in the order [`redact_pii`] applies them: one scan
/// tells which of them can match at all, and most text (no personal data) is scanned once
/// instead of six times.
#[allow(clippy::expect_used)] // the patterns are constants, checked by the tests
static ANY: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new([BEARER_P, API_KEY_P, EMAIL_P, IBAN_P, CARD_P, PHONE_P]).expect("constant regexes"));

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() < 15 || compact.len() > 34 {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// Redact personal data and credentials from text.
pub fn redact_pii(s: &str) -> Cow<'_, str> {
    /// `out` with `re`'s matches replaced, and whether there were any.
    fn apply<'a>(out: Cow<'a, str>, re: &Regex, f: &dyn Fn(&Captures<'_>) -> String) -> (Cow<'a, str>, bool) {
        let replaced = match re.replace_all(&out, |c: &Captures<'_>| f(c)) {
            Cow::Borrowed(_) => None,
            Cow::Owned(o) => Some(o),
        };
        match replaced {
            Some(o) => (Cow::Owned(o), true),
            None => (out, false),
        }
    }
    // Most text has no match at all: `is_match` stops early and skips the overlapping search
    // that `matches` needs to name every pattern.
    if !ANY.is_match(s) {
        return Cow::Borrowed(s);
    }
    // One scan over the text tells which patterns match; only those run. A replacement can
    // change what later patterns see (a placeholder next to digits makes a word boundary), so
    // after one the remaining patterns are checked again on the new text: the result is the
    // same as running all six in turn.
    let mut hits = ANY.matches(s);
    let mut out: Cow<'_, str> = Cow::Borrowed(s);
    for (i, pattern) in [&*BEARER, &*API_KEY, &*EMAIL, &*IBAN, &*CARD, &*PHONE].into_iter().enumerate() {
        if !hits.matched(i) {
            continue;
        }
        let replaced;
        (out, replaced) = apply(out, pattern, &|c| replacement(i, c));
        if replaced {
            hits = ANY.matches(&out);
        }
    }
    out
}

/// The placeholder for a match of pattern `i` of [`ANY`] (or the match itself where its
/// checksum says it is not a card or IBAN number).
fn replacement(i: usize, c: &Captures<'_>) -> String {
    match i {
        0 => "Bearer [REDACTED_TOKEN]".into(),
        1 => "[REDACTED_KEY]".into(),
        2 => "[EMAIL]".into(),
        3 => {
            if iban_valid(&c[0]) {
                "[IBAN]".into()
            } else {
                c[0].to_string()
            }
        }
        4 => {
            let digits: Vec<u8> = c[0].bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
            if (13..=19).contains(&digits.len()) && luhn(&digits) { "[CARD]".into() } else { c[0].to_string() }
        }
        _ => "[PHONE]".into(),
    }
}

/// What is stored for a body under the given mode.
pub fn for_storage(mode: RedactMode, body: String) -> String {
    match mode {
        RedactMode::None => body,
        RedactMode::Pii => match redact_pii(&body) {
            Cow::Borrowed(_) => body,
            Cow::Owned(o) => o,
        },
        RedactMode::HashOnly => format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(redact_pii(input), expected, "input: {input:?}");
    }

    #[test]
    fn redacts() {
        check("mail jane.doe+x@example.co.uk now", "mail [EMAIL] now");
        check("call +44 20 7946 0958 or (555) 123-4567", "call [PHONE] or [PHONE]");
        check("card 4111 1111 1111 1111 ok", "card [CARD] ok");
        check("card 4111111111111112 not luhn", "card 4111111111111112 not luhn");
        check("iban GB82 WEST 1234 5698 7654 32 end", "iban [IBAN] end");
        check("iban DE89370400440532013000", "iban [IBAN]");
        check("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer [REDACTED_TOKEN]");
        check("key sk-proj-abcdefghijklmnopqrstuv", "key [REDACTED_KEY]");
    }

    #[test]
    fn a_placeholder_can_make_a_later_match() {
        // "x1234" has no word boundary before the digits; "[EMAIL]1234" has. Redacting the
        // address first lets the phone pattern match, as when every pattern runs in turn.
        check("write a@b.cox1234 567 8901 now", "write [EMAIL][PHONE] now");
        check("no personal data here, only 12 and 345", "no personal data here, only 12 and 345");
    }

    #[test]
    fn leaves_json_numbers_alone() {
        let j = r#"{"created":1732430000,"usage":{"prompt_tokens":12345,"completion_tokens":7},"id":"chatcmpl-AB12CD34EF56GH78"}"#;
        check(j, j);
    }

    #[test]
    fn hash_only() {
        let s = for_storage(RedactMode::HashOnly, "secret text".into());
        assert!(s.starts_with("sha256:") && !s.contains("secret"));
    }
}
