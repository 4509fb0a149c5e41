//! Use-case classification: which of the org's use cases an inbound request belongs to.
//! Rules are evaluated in configuration order; the first use case with a matching rule wins.
//! A virtual key bound to a use case decides before any rule.

use std::sync::Arc;

use crate::config::{Config, MatchRule};

/// The use case of traffic no rule claims.
pub const UNCLASSIFIED: &str = "unclassified";

/// What classification may look at; the system prompt is computed only when a rule needs it.
pub struct Input<'a, F: FnOnce() -> Option<String>> {
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
    pub path: &'a str,
    pub model: Option<&'a str>,
    /// sha256 (hex) of the client's key, when one was sent.
    pub key_sha256: &'a dyn Fn() -> Option<String>,
    pub system_prompt: F,
}

#[derive(Debug)]
pub struct Classifier {
    names: Vec<Arc<str>>,
    rules: Vec<Vec<MatchRule>>,
    unclassified: Arc<str>,
}

impl Classifier {
    pub fn new(cfg: &Config) -> Self {
        Classifier {
            names: cfg.use_cases.iter().map(|u| Arc::from(u.name.as_str())).collect(),
            rules: cfg.use_cases.iter().map(|u| u.rules.clone()).collect(),
            unclassified: Arc::from(UNCLASSIFIED),
        }
    }

    pub fn unclassified(&self) -> &Arc<str> {
        &self.unclassified
    }

    /// The interned name of a configured use case.
    pub fn name(&self, idx: usize) -> &Arc<str> {
        &self.names[idx]
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    /// Index of the first matching use case, or `None` for unclassified traffic.
    pub fn classify<F: FnOnce() -> Option<String>>(&self, input: Input<'_, F>) -> Option<usize> {
        let mut system: Option<Option<String>> = None;
        let mut system_fn = Some(input.system_prompt);
        let mut key: Option<Option<String>> = None;
        for (i, rules) in self.rules.iter().enumerate() {
            for r in rules {
                if let Some((h, v)) = &r.header
                    && (input.header)(h) != Some(v.as_str())
                {
                    continue;
                }
                if let Some(p) = &r.path
                    && p != input.path
                {
                    continue;
                }
                if let Some(g) = &r.model
                    && !input.model.is_some_and(|m| g.matches(m))
                {
                    continue;
                }
                if let Some(want) = &r.api_key_sha256 {
                    let k = key.get_or_insert_with(|| (input.key_sha256)());
                    if k.as_deref() != Some(want.as_str()) {
                        continue;
                    }
                }
                if let Some(re) = &r.system_prompt {
                    let s = system.get_or_insert_with(|| system_fn.take().and_then(|f| f()));
                    if !s.as_deref().is_some_and(|s| re.is_match(s)) {
                        continue;
                    }
                }
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::path::Path;

    fn classifier() -> Classifier {
        let cfg = Config::from_toml(
            r#"
[[use_cases]]
name = "triage"
match = { header = "x-genset-use-case", value = "triage" }
[[use_cases]]
name = "invoices"
match = [{ system_prompt = "(?i)extract .*invoice" }, { model = "gpt-4o-mini*", path = "/v1/chat/completions" }]
[[use_cases]]
name = "embed"
match = { path = "/v1/embeddings" }
"#,
            Path::new("t"),
        )
        .unwrap();
        Classifier::new(&cfg)
    }

    fn check(c: &Classifier, header: Option<&str>, path: &str, model: Option<&str>, system: Option<&str>, want: &str) {
        let h = |name: &str| if name == "x-genset-use-case" { header } else { None };
        let got = c.classify(Input { header: &h, path, model, key_sha256: &|| None, system_prompt: || system.map(str::to_string) });
        let name = got.map(|i| c.name(i).to_string()).unwrap_or_else(|| UNCLASSIFIED.into());
        assert_eq!(name, want, "header={header:?} path={path} model={model:?} system={system:?}");
    }

    #[test]
    fn rules_in_order() {
        let c = classifier();
        check(&c, Some("triage"), "/v1/chat/completions", Some("gpt-4o-mini"), None, "triage");
        check(&c, Some("other"), "/v1/chat/completions", Some("gpt-4o"), None, UNCLASSIFIED);
        check(&c, None, "/v1/chat/completions", Some("gpt-4o"), Some("Please EXTRACT the invoice number"), "invoices");
        check(&c, None, "/v1/chat/completions", Some("gpt-4o-mini-2024"), None, "invoices");
        check(&c, None, "/v1/messages", Some("gpt-4o-mini"), None, UNCLASSIFIED);
        check(&c, None, "/v1/embeddings", Some("text-embedding-3-small"), None, "embed");
    }

    #[test]
    fn system_prompt_computed_lazily() {
        let c = classifier();
        let h = |_: &str| Some("triage");
        let got = c.classify(Input {
            header: &h,
            path: "/v1/chat/completions",
            model: None,
            key_sha256: &|| None,
            system_prompt: || -> Option<String> { panic!("must not be computed when the header decides") },
        });
        assert_eq!(got, Some(0));
    }
}
