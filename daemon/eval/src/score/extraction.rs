//! Extraction: field-level precision, recall and F1 between two JSON answers.
//!
//! Both answers are parsed as JSON, tolerating a Markdown fence and prose
//! around it (the first object or array found). Each document is flattened to
//! its leaf paths (`a.b[0].c`; empty objects and arrays are leaves; keys that
//! contain `.`, `[` or `]` are written `["k.x"]`). A local leaf matches when
//! the cloud has the same path with an equal value:
//!
//! - strings: trimmed, case-folded, inner whitespace collapsed;
//! - numbers: numerically (relative tolerance 1e-9), and a string holding a
//!   number equals that number (`"12"` = `12`);
//! - booleans: equal, and `"true"`/`"false"` strings equal the booleans;
//! - `null` only equals `null`.
//!
//! `precision = matched / local leaves`, `recall = matched / cloud leaves`,
//! `F1 = 2PR / (P + R)` (0 when both are 0), and the score is F1. Arrays are
//! compared by index: an extraction that reorders a list is penalised.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Score;
use crate::json::find_json;

/// How many unmatched paths the detail lists on each side.
const DETAIL_LIMIT: usize = 20;

pub(super) fn score(cloud: &str, local: &str, threshold: f64) -> Score {
    let Some((cloud_json, _)) = find_json(cloud) else {
        return Score::not_comparable(json!({ "error": "the cloud answer is not JSON" }));
    };
    let Some((local_json, found)) = find_json(local) else {
        return Score::new(0.0, threshold, json!({ "error": "the local answer is not JSON" }));
    };
    let mut cloud_leaves = BTreeMap::new();
    flatten(&cloud_json, String::new(), &mut cloud_leaves);
    let mut local_leaves = BTreeMap::new();
    flatten(&local_json, String::new(), &mut local_leaves);

    let mut matched = 0usize;
    let mut wrong = Vec::new();
    let mut extra = Vec::new();
    for (path, lv) in &local_leaves {
        match cloud_leaves.get(path) {
            Some(cv) if leaf_eq(cv, lv) => matched += 1,
            Some(cv) => wrong.push(json!({ "path": path, "cloud": cv, "local": lv })),
            None => extra.push(path.clone()),
        }
    }
    let missing: Vec<&String> = cloud_leaves.keys().filter(|p| !local_leaves.contains_key(*p)).collect();

    let (p, r, f1) = prf(matched, local_leaves.len(), cloud_leaves.len());
    let detail = json!({
        "precision": p,
        "recall": r,
        "f1": f1,
        "matched": matched,
        "local_leaves": local_leaves.len(),
        "cloud_leaves": cloud_leaves.len(),
        "local_json_found": found,
        "wrong": wrong.into_iter().take(DETAIL_LIMIT).collect::<Vec<_>>(),
        "missing": missing.into_iter().take(DETAIL_LIMIT).collect::<Vec<_>>(),
        "extra": extra.into_iter().take(DETAIL_LIMIT).collect::<Vec<_>>(),
    });
    Score::new(f1, threshold, detail)
}

/// Precision, recall and F1 from counts; an empty side has precision (or
/// recall) 1 only when the other side is empty too.
fn prf(matched: usize, local_n: usize, cloud_n: usize) -> (f64, f64, f64) {
    let ratio = |num: usize, den: usize, other: usize| {
        if den == 0 { if other == 0 { 1.0 } else { 0.0 } } else { num as f64 / den as f64 }
    };
    let p = ratio(matched, local_n, cloud_n);
    let r = ratio(matched, cloud_n, local_n);
    let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    (p, r, f1)
}

fn flatten<'v>(value: &'v Value, path: String, out: &mut BTreeMap<String, &'v Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if k.contains(['.', '[', ']']) {
                    format!("[{}]", Value::String(k.clone()))
                } else if path.is_empty() {
                    k.clone()
                } else {
                    format!(".{k}")
                };
                flatten(v, format!("{path}{key}"), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, format!("{path}[{i}]"), out);
            }
        }
        leaf => {
            let path = if path.is_empty() { "$".to_string() } else { path };
            out.insert(path, leaf);
        }
    }
}

fn norm_str(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn num_eq(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn leaf_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => norm_str(x) == norm_str(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => num_eq(x, y),
            _ => x == y,
        },
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => match (n.as_f64(), s.trim().parse::<f64>()) {
            (Some(x), Ok(y)) => num_eq(x, y),
            _ => false,
        },
        (Value::Bool(x), Value::String(s)) | (Value::String(s), Value::Bool(x)) => norm_str(s) == if *x { "true" } else { "false" },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, ScoreOptions, score as score_kind};
    use super::*;

    /// One extraction case: expected (precision, recall, F1); the score is F1.
    fn check(cloud: &str, local: &str, expected: (f64, f64, f64)) {
        let s = score_kind(Kind::Extraction, cloud, local, &ScoreOptions::default());
        let got = (s.detail["precision"].as_f64().unwrap_or(f64::NAN), s.detail["recall"].as_f64().unwrap_or(f64::NAN), s.value);
        // NaN expected: the figure is absent from the detail.
        let close = |a: f64, b: f64| if b.is_nan() { a.is_nan() } else { (a - b).abs() < 1e-6 };
        assert!(
            close(got.0, expected.0) && close(got.1, expected.1) && close(got.2, expected.2),
            "cloud {cloud} local {local}: got {got:?} expected {expected:?}; detail {}",
            s.detail
        );
    }

    #[test]
    fn extraction_cases() {
        let cloud = r#"{"name": "Ann", "age": 30, "tags": ["a", "b"]}"#;
        // Cloud leaves: name, age, tags[0], tags[1] = 4.
        // Local leaves: name (" ann " ~ "Ann"), age ("30" ~ 30), tags[0] = 3,
        // all matched. P = 3/3 = 1, R = 3/4 = 0.75,
        // F1 = 2 * 1 * 0.75 / 1.75 = 1.5 / 1.75 = 6/7 = 0.857142857...
        check(
            cloud,
            r#"```json
{"name": " ann ", "age": "30", "tags": ["a"]}
```"#,
            (1.0, 0.75, 6.0 / 7.0),
        );
        // Local adds "extra": 4 local leaves, 3 matched.
        // P = 3/4, R = 3/4, F1 = 0.75.
        check(cloud, r#"{"name": "ANN", "age": 30.0, "tags": ["a"], "extra": 1}"#, (0.75, 0.75, 0.75));
        // Identical up to prose around it.
        check(cloud, &format!("Here is the data: {cloud} Let me know!"), (1.0, 1.0, 1.0));
        // Nested paths: cloud a.b, a.c[0].d = 2 leaves; local a.b wrong, a.c[0].d right:
        // P = 1/2, R = 1/2, F1 = 0.5.
        check(r#"{"a": {"b": 1, "c": [{"d": true}]}}"#, r#"{"a": {"b": 2, "c": [{"d": "true"}]}}"#, (0.5, 0.5, 0.5));
        // Reordered list: by index nothing matches. P = R = F1 = 0.
        check(r#"["x", "y"]"#, r#"["y", "x"]"#, (0.0, 0.0, 0.0));
        // Local not JSON: 0.
        check(cloud, "Sorry, I cannot help with that.", (f64::NAN, f64::NAN, 0.0));
    }

    #[test]
    fn local_not_json_detail() {
        let s = score(r#"{"a": 1}"#, "nope", 0.9);
        assert_eq!(s.value, 0.0);
        assert!(s.comparable);
        assert_eq!(s.detail["error"], "the local answer is not JSON");
        let s = score("nope", r#"{"a": 1}"#, 0.9);
        assert!(!s.comparable);
    }

    #[test]
    fn flattens_paths() {
        let v = json!({"a": {"b": [1, {"c": null}], "e": {}}, "x.y": 2, "l": []});
        let mut out = BTreeMap::new();
        flatten(&v, String::new(), &mut out);
        let paths: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(paths, vec!["[\"x.y\"]", "a.b[0]", "a.b[1].c", "a.e", "l"]);
        let mut out = BTreeMap::new();
        let five = json!(5);
        flatten(&five, String::new(), &mut out);
        assert_eq!(out.keys().collect::<Vec<_>>(), vec!["$"]);
    }

    #[test]
    fn leaf_equality() {
        assert!(leaf_eq(&json!("  New  York "), &json!("new york")));
        assert!(leaf_eq(&json!(12), &json!("12")));
        assert!(leaf_eq(&json!(12), &json!(12.0)));
        assert!(leaf_eq(&json!(false), &json!("False")));
        assert!(!leaf_eq(&json!(null), &json!("")));
        assert!(!leaf_eq(&json!(12), &json!("12 apples")));
        assert!(leaf_eq(&json!([]), &json!([])));
        assert!(!leaf_eq(&json!([]), &json!({})));
    }
}
