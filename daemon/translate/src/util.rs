//! Small helpers for walking `serde_json` values with path-carrying errors.

use serde_json::{Map, Value};

use crate::{Api, TranslateError};

pub(crate) type Obj = Map<String, Value>;

pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::Invalid { path: path.into(), message: message.into() }
}

pub(crate) fn unsupported(field: impl Into<String>, to: Api, reason: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported { field: field.into(), to, reason: reason.into() }
}

/// Joins a parent path and a key (`messages[1]` + `content` -> `messages[1].content`).
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

pub(crate) fn as_obj<'a>(value: &'a Value, path: &str) -> Result<&'a Obj, TranslateError> {
    value.as_object().ok_or_else(|| invalid(path, "expected an object"))
}

pub(crate) fn as_arr<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, TranslateError> {
    value.as_array().ok_or_else(|| invalid(path, "expected an array"))
}

/// A present, non-null field.
pub(crate) fn field<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A required string field.
pub(crate) fn req_str<'a>(obj: &'a Obj, key: &str, parent: &str) -> Result<&'a str, TranslateError> {
    match field(obj, key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(join(parent, key), "expected a string")),
        None => Err(invalid(join(parent, key), "required")),
    }
}

/// An optional string field (absent or null is `None`).
pub(crate) fn opt_str<'a>(obj: &'a Obj, key: &str, parent: &str) -> Result<Option<&'a str>, TranslateError> {
    match field(obj, key) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(join(parent, key), "expected a string")),
        None => Ok(None),
    }
}

/// An optional non-negative integer field.
pub(crate) fn opt_u64(obj: &Obj, key: &str, parent: &str) -> Result<Option<u64>, TranslateError> {
    match field(obj, key) {
        Some(v) => v.as_u64().map(Some).ok_or_else(|| invalid(join(parent, key), "expected a non-negative integer")),
        None => Ok(None),
    }
}

/// Splits a `data:<media type>;base64,<data>` URL.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    (!media_type.is_empty()).then_some((media_type, data))
}
