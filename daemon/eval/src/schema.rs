//! A small JSON Schema validator for the subset canaries use.
//!
//! Supported keywords: `type` (a name or a list; `integer` is a number with no
//! fractional part), `properties`, `required`, `additionalProperties` (boolean
//! or schema), `items` (one schema for every element), `enum`, `const`,
//! `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers, as in
//! draft 6 and later), `minLength`, `maxLength` (in characters), `minItems`,
//! `maxItems`, `pattern` (a Rust `regex`, searched, not anchored). Boolean
//! schemas `true`/`false` are accepted. Annotations (`$schema`, `$id`,
//! `$comment`, `title`, `description`, `default`, `examples`, `format`) are
//! ignored. Any other keyword (`$ref`, `oneOf`, ...) is rejected by
//! [`check_schema`] at load time, so a canary never silently passes because a
//! keyword was not understood.
//!
//! The `jsonschema` crate was not used: its dependency tree (HTTP resolver,
//! TLS, fancy-regex, and a workspace-wide `serde_json/float_roundtrip`) is
//! far larger than this subset needs.

use serde_json::{Map, Value};

const TYPES: &[&str] = &["null", "boolean", "object", "array", "number", "integer", "string"];
const ANNOTATIONS: &[&str] = &["$schema", "$id", "$comment", "title", "description", "default", "examples", "format"];
/// At most this many violations are reported for one instance.
const MAX_ERRORS: usize = 10;
/// Compiled-size cap for `pattern` regexes.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Check that `schema` only uses the supported subset and is well formed.
/// The error names the schema location (`#/properties/age/minimum`).
pub fn check_schema(schema: &Value) -> Result<(), String> {
    check_at(schema, "#")
}

fn check_at(schema: &Value, at: &str) -> Result<(), String> {
    let obj = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(o) => o,
        _ => return Err(format!("{at}: a schema must be an object or a boolean")),
    };
    for (key, v) in obj {
        let here = format!("{at}/{key}");
        match key.as_str() {
            "type" => {
                let names: Vec<&Value> = match v {
                    Value::Array(a) if !a.is_empty() => a.iter().collect(),
                    Value::String(_) => vec![v],
                    _ => return Err(format!("{here}: must be a type name or a non-empty list of them")),
                };
                for n in names {
                    if !n.as_str().is_some_and(|s| TYPES.contains(&s)) {
                        return Err(format!("{here}: unknown type {n}"));
                    }
                }
            }
            "properties" => {
                let Value::Object(props) = v else {
                    return Err(format!("{here}: must be an object of schemas"));
                };
                for (name, sub) in props {
                    check_at(sub, &format!("{here}/{name}"))?;
                }
            }
            "required" => {
                if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
                    return Err(format!("{here}: must be a list of property names"));
                }
            }
            "additionalProperties" | "items" => {
                if v.is_array() {
                    return Err(format!("{here}: the list (tuple) form is not supported"));
                }
                check_at(v, &here)?;
            }
            "enum" => {
                if !v.is_array() {
                    return Err(format!("{here}: must be a list"));
                }
            }
            "const" => {}
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                if !v.is_number() {
                    return Err(format!("{here}: must be a number"));
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" => {
                if v.as_u64().is_none() {
                    return Err(format!("{here}: must be a non-negative integer"));
                }
            }
            "pattern" => {
                let Some(p) = v.as_str() else {
                    return Err(format!("{here}: must be a string"));
                };
                build_regex(p).map_err(|e| format!("{here}: invalid regex: {e}"))?;
            }
            k if ANNOTATIONS.contains(&k) => {}
            k => return Err(format!("{here}: unsupported keyword `{k}`")),
        }
    }
    Ok(())
}

fn build_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build()
}

/// Validate `instance` against a schema that passed [`check_schema`].
/// Returns the violations (at most 10), each prefixed by the instance path
/// (`$.items[2].price`); empty means valid.
pub fn validate(schema: &Value, instance: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate_at(schema, instance, "$", &mut errors);
    errors
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Number(_) => "number",
        Value::String(_) => "string",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match (t, v) {
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => type_name(v) == t,
    }
}

fn push(errors: &mut Vec<String>, msg: String) {
    if errors.len() < MAX_ERRORS {
        errors.push(msg);
    }
}

fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn validate_at(schema: &Value, inst: &Value, at: &str, errors: &mut Vec<String>) {
    let s: &Map<String, Value> = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return push(errors, format!("{at}: no value is allowed here")),
        Value::Object(o) => o,
        _ => return push(errors, format!("{at}: invalid schema")),
    };
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(name) => has_type(inst, name),
            Value::Array(names) => names.iter().filter_map(Value::as_str).any(|n| has_type(inst, n)),
            _ => false,
        };
        if !ok {
            push(errors, format!("{at}: expected type {t}, found {}", type_name(inst)));
            return;
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.iter().any(|o| json_eq(o, inst))
    {
        push(errors, format!("{at}: {inst} is not one of {}", Value::Array(options.clone())));
    }
    if let Some(c) = s.get("const")
        && !json_eq(c, inst)
    {
        push(errors, format!("{at}: {inst} is not {c}"));
    }
    match inst {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(m) = num(s.get("minimum")).filter(|m| x < *m) {
                push(errors, format!("{at}: {n} is below the minimum {m}"));
            }
            if let Some(m) = num(s.get("maximum")).filter(|m| x > *m) {
                push(errors, format!("{at}: {n} is above the maximum {m}"));
            }
            if let Some(m) = num(s.get("exclusiveMinimum")).filter(|m| x <= *m) {
                push(errors, format!("{at}: {n} is not above {m}"));
            }
            if let Some(m) = num(s.get("exclusiveMaximum")).filter(|m| x >= *m) {
                push(errors, format!("{at}: {n} is not below {m}"));
            }
        }
        Value::String(text) => {
            let len = text.chars().count() as u64;
            if let Some(m) = s.get("minLength").and_then(Value::as_u64).filter(|m| len < *m) {
                push(errors, format!("{at}: length {len} is below minLength {m}"));
            }
            if let Some(m) = s.get("maxLength").and_then(Value::as_u64).filter(|m| len > *m) {
                push(errors, format!("{at}: length {len} is above maxLength {m}"));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                match build_regex(p) {
                    Ok(re) if re.is_match(text) => {}
                    Ok(_) => push(errors, format!("{at}: does not match the pattern {p:?}")),
                    Err(e) => push(errors, format!("{at}: invalid pattern: {e}")),
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(m) = s.get("minItems").and_then(Value::as_u64).filter(|m| len < *m) {
                push(errors, format!("{at}: {len} items, fewer than minItems {m}"));
            }
            if let Some(m) = s.get("maxItems").and_then(Value::as_u64).filter(|m| len > *m) {
                push(errors, format!("{at}: {len} items, more than maxItems {m}"));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_at(item_schema, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        Value::Object(obj) => {
            if let Some(Value::Array(req)) = s.get("required") {
                for name in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(name) {
                        push(errors, format!("{at}: missing required property {name:?}"));
                    }
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                let path = format!("{at}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(sub) => validate_at(sub, v, &path, errors),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            push(errors, format!("{at}: property {k:?} is not allowed"));
                        }
                        Some(extra) => validate_at(extra, v, &path, errors),
                        None => {}
                    },
                }
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person() -> Value {
        json!({
            "type": "object",
            "title": "A person",
            "required": ["name", "age"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[A-Z]" },
                "age": { "type": "integer", "minimum": 0, "exclusiveMaximum": 150 },
                "role": { "enum": ["admin", "user"] },
                "tags": { "type": "array", "items": { "type": "string" }, "maxItems": 2 },
                "score": { "type": ["number", "null"] }
            }
        })
    }

    /// One instance against the person schema: expected number of violations.
    fn check(instance: Value, expected_errors: usize) {
        let errors = validate(&person(), &instance);
        assert_eq!(errors.len(), expected_errors, "instance {instance}: {errors:?}");
    }

    #[test]
    fn validates_instances() {
        check(json!({"name": "Ann", "age": 30}), 0);
        check(json!({"name": "Ann", "age": 30.0, "role": "user", "tags": ["a"], "score": null}), 0);
        check(json!({"name": "Ann", "age": 30, "score": 0.5}), 0);
        check(json!({"name": "Ann"}), 1); // missing age
        check(json!({"name": "ann", "age": 30}), 1); // pattern
        check(json!({"name": "Annabel", "age": 30}), 1); // maxLength
        check(json!({"name": "Ann", "age": 30.5}), 1); // not an integer
        check(json!({"name": "Ann", "age": -1}), 1); // minimum
        check(json!({"name": "Ann", "age": 150}), 1); // exclusiveMaximum
        check(json!({"name": "Ann", "age": 1, "role": "root"}), 1); // enum
        check(json!({"name": "Ann", "age": 1, "x": 1}), 1); // additionalProperties
        check(json!({"name": "Ann", "age": 1, "tags": ["a", 2, "c"]}), 2); // item type + maxItems
        check(json!([1]), 1); // wrong root type
    }

    #[test]
    fn rejects_unsupported_or_malformed_schemas() {
        assert_eq!(check_schema(&person()), Ok(()));
        assert_eq!(check_schema(&json!(true)), Ok(()));
        let bad = [
            (json!({"oneOf": []}), "#/oneOf: unsupported keyword `oneOf`"),
            (json!({"type": "text"}), "#/type: unknown type \"text\""),
            (json!({"properties": {"a": {"$ref": "#/x"}}}), "#/properties/a/$ref: unsupported keyword `$ref`"),
            (json!({"minLength": -1}), "#/minLength: must be a non-negative integer"),
            (json!({"items": [{}]}), "#/items: the list (tuple) form is not supported"),
            (json!(3), "#: a schema must be an object or a boolean"),
        ];
        for (schema, want) in bad {
            assert_eq!(check_schema(&schema), Err(want.to_string()), "{schema}");
        }
        assert!(check_schema(&json!({"pattern": "("})).is_err_and(|e| e.starts_with("#/pattern: invalid regex")));
    }

    #[test]
    fn const_and_false_schema() {
        assert!(validate(&json!({"const": 1}), &json!(1.0)).is_empty());
        assert_eq!(validate(&json!({"const": 1}), &json!(2)).len(), 1);
        assert_eq!(validate(&json!(false), &json!(null)).len(), 1);
    }
}
