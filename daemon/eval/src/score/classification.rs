//! Classification: normalised label match.
//!
//! Both answers are reduced to a label, then compared for equality (1 or 0).
//! Normalisation ([`normalize_label`]): lowercase, collapse whitespace, strip
//! surrounding quotes, punctuation and Markdown (`**`, `` ` ``, `_`, `#`, a
//! leading `- ` bullet), and a leading `Label:`-style prefix.
//!
//! With a known label set, an answer resolves to the first of: the whole
//! answer, its first non-empty line, the first word of that line, whose
//! normalised form is a known label. Without a set, the normalised first
//! non-empty line is the label. If the cloud's answer does not resolve to a
//! known label, both sides fall back to their normalised first line.

use serde_json::json;

use super::Score;

/// Prefixes a model puts before the label (`Label: spam`, `**Category:** x`).
const PREFIXES: &[&str] = &[
    "label",
    "labels",
    "category",
    "class",
    "classification",
    "answer",
    "final answer",
    "output",
    "result",
    "intent",
    "sentiment",
    "prediction",
];

fn is_junk(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\''
                | '`'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201c}'
                | '\u{201d}'
                | '\u{ab}'
                | '\u{bb}'
                | '*'
                | '_'
                | '~'
                | '#'
                | '.'
                | ','
                | ';'
                | ':'
                | '!'
                | '?'
                | '('
                | ')'
                | '['
                | ']'
                | '{'
                | '}'
                | '<'
                | '>'
        )
}

fn strip_junk(s: &str) -> &str {
    let mut s = s.trim_matches(is_junk);
    // A Markdown bullet ("- spam"); a bare leading '-' is kept ("-1").
    while let Some(rest) = s.strip_prefix("- ") {
        s = rest.trim_matches(is_junk);
    }
    s
}

/// The normalised form of a label or of a short answer.
pub fn normalize_label(raw: &str) -> String {
    let lower = raw.to_lowercase();
    let collapsed = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s = strip_junk(&collapsed);
    for prefix in PREFIXES {
        if let Some(rest) = s.strip_prefix(prefix)
            && let Some(rest) = rest.trim_start_matches(['*', '_', ' ']).strip_prefix(':')
        {
            s = strip_junk(rest);
            break;
        }
    }
    s.to_string()
}

fn first_line(answer: &str) -> &str {
    answer.lines().find(|l| !strip_junk(l).is_empty()).unwrap_or("")
}

/// Resolve an answer to a known label, if any. `labels` are normalised.
pub(crate) fn resolve(answer: &str, labels: &[String]) -> Option<String> {
    let line = first_line(answer);
    let line_norm = normalize_label(line);
    let first_word = line_norm.split(' ').next().unwrap_or("");
    [normalize_label(answer), line_norm.clone(), normalize_label(first_word)]
        .into_iter()
        .find(|cand| !cand.is_empty() && labels.iter().any(|l| l == cand))
}

pub(super) fn score(cloud: &str, local: &str, labels: &[String], threshold: f64) -> Score {
    let known: Vec<String> = labels.iter().map(|l| normalize_label(l)).collect();
    let (cloud_label, local_label, note) = if known.is_empty() {
        (normalize_label(first_line(cloud)), Some(normalize_label(first_line(local))), None)
    } else {
        match resolve(cloud, &known) {
            Some(c) => (c, resolve(local, &known), None),
            None => (
                normalize_label(first_line(cloud)),
                Some(normalize_label(first_line(local))),
                Some("the cloud answer is not in the label set; compared first lines"),
            ),
        }
    };
    let matched = local_label.as_deref() == Some(cloud_label.as_str());
    let mut detail = json!({
        "cloud_label": cloud_label,
        "local_label": local_label,
        "match": matched,
    });
    if let Some(note) = note {
        detail["note"] = json!(note);
    } else if local_label.is_none() {
        detail["note"] = json!("the local answer is not a known label");
    }
    Score::new(if matched { 1.0 } else { 0.0 }, threshold, detail)
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, ScoreOptions, score as score_kind};
    use super::*;

    /// One classification case: (cloud, local, label set) -> expected value.
    fn check(cloud: &str, local: &str, labels: &[&str], expected: f64) {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let opts = ScoreOptions { labels: &labels, ..Default::default() };
        let s = score_kind(Kind::Classification, cloud, local, &opts);
        assert!(
            (s.value - expected).abs() < 1e-6,
            "cloud {cloud:?} local {local:?}: got {} expected {expected}; detail {}",
            s.value,
            s.detail
        );
        assert_eq!(s.pass, expected == 1.0);
    }

    #[test]
    fn normalises_labels() {
        for (raw, want) in [
            ("  Spam ", "spam"),
            ("\"spam\"", "spam"),
            ("**Spam**", "spam"),
            ("`spam`.", "spam"),
            ("Label: Spam", "spam"),
            ("**Category:** Not   Spam!", "not spam"),
            ("- spam", "spam"),
            ("-1", "-1"),
            ("not_spam", "not_spam"),
            ("Sentiment: 'positive'", "positive"),
            ("", ""),
        ] {
            assert_eq!(normalize_label(raw), want, "raw {raw:?}");
        }
    }

    #[test]
    fn classification_cases() {
        // No label set: normalised first lines compared.
        check("Spam", "spam", &[], 1.0);
        check("Spam", "**SPAM**", &[], 1.0);
        check("Label: billing", "billing.", &[], 1.0);
        check("Spam", "Ham", &[], 0.0);
        check("Spam", "Spam\n\nThe message advertises pills.", &[], 1.0);
        // With a label set: whole answer, first line, first word.
        check("refund", "Refund - the customer wants money back", &["refund", "billing"], 1.0);
        check("billing", "Billing\nbecause it mentions an invoice", &["refund", "billing"], 1.0);
        check("billing", "refund", &["refund", "billing"], 0.0);
        check("billing", "I think this is about invoices", &["refund", "billing"], 0.0);
        // Multi-word labels resolve from the whole answer / line.
        check("Not spam", "not spam", &["spam", "not spam"], 1.0);
        check("Not spam", "spam", &["spam", "not spam"], 0.0);
        // Cloud outside the set: fall back to first-line comparison.
        check("other", "Other", &["spam", "ham"], 1.0);
    }

    #[test]
    fn detail_explains_unknown_local_label() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let s = score("a", "zzz", &labels, 1.0);
        assert_eq!(s.detail["local_label"], serde_json::Value::Null);
        assert!(s.detail["note"].is_string());
    }
}
