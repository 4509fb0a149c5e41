//! The new genset.toml: the current file, edited in place (its comments and every section
//! the bundle does not speak about are kept), with the bundle's `[[upstreams]]`, `[routing]`
//! defaults, `[[use_cases]]` and `[[models]]` in place of the old ones.
//!
//! Keys the daemon's configuration does not have yet (a use case's `kind`, `model`, `chain`,
//! `policy`, `thresholds`; `routing.chain`; canaries) are not written here: they stay in the
//! provisioning record (`<state>/provisioning/manifest.toml`) and the report lists them.
//! When the configuration grows those keys, write them in [`use_case_table`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::manifest::{Manifest, ModelEntry, UseCase};

pub struct Rendered {
    /// The file to write.
    pub text: String,
    /// The same with credentials this process cannot see removed: what is validated here.
    /// (The unit's `ExecStartPre=gensetd check-config` checks the real file with them.)
    pub validation_text: String,
    /// Credentials left to the service to check, as messages.
    pub unchecked_credentials: Vec<String>,
    /// Manifest keys kept in the provisioning record only.
    pub kept_aside: Vec<String>,
}

/// Render the new configuration. `model_paths[i]` is where `m.models[i]` is installed.
pub fn render(current: &str, m: &Manifest, model_paths: &[PathBuf], stamp: &str) -> anyhow::Result<Rendered> {
    let mut doc: DocumentMut = current.parse().context("the current configuration is not valid TOML")?;
    let mut kept_aside = Vec::new();
    // Sections new to the file go after everything else.
    let mut next_position = max_position(doc.as_table()) + 1;
    let mut first = true;
    // The first new table of a section inherits the comments that stood before the old
    // one (in TOML they belong to the next table header, whatever they describe); the first
    // of all says where the provisioned part comes from.
    let mut banner = |t: &mut Table, inherited: &mut Inherited| {
        match inherited.position {
            Some(p) => t.set_position(Some(p)),
            None => {
                t.set_position(Some(next_position));
                next_position += 1;
            }
        }
        let mut prefix = inherited.prefix.take().unwrap_or_else(|| "\n".into());
        if std::mem::take(&mut first) {
            prefix.push_str(&format!(
                "# ---- provisioned from bundle {} {} by gensetctl provision, {stamp} ----\n",
                m.bundle.name, m.bundle.version
            ));
        }
        t.decor_mut().set_prefix(prefix);
    };

    if let Some(ups) = &m.upstreams {
        let mut inherited = take_section(&mut doc, "upstreams");
        let mut aot = ArrayOfTables::new();
        for u in ups {
            let mut t = Table::new();
            // name, api, base_url first; the rest as the manifest has them (sorted).
            let lead = ["name", "api", "base_url"];
            for k in lead.iter().copied().chain(u.keys().map(String::as_str).filter(|k| !lead.contains(k))) {
                if let Some(v) = u.get(k) {
                    t.insert(k, Item::Value(to_edit(v)));
                }
            }
            banner(&mut t, &mut inherited);
            aot.push(t);
        }
        doc.insert("upstreams", Item::ArrayOfTables(aot));
    }

    if let Some(r) = &m.routing {
        let routing = doc.entry("routing").or_insert_with(|| Item::Table(Table::new()));
        if let Some(t) = routing.as_table_mut() {
            for (k, v) in [("openai", &r.openai), ("anthropic", &r.anthropic)] {
                match v {
                    Some(name) => {
                        t.insert(k, toml_edit::value(name.as_str()));
                    }
                    None => {
                        t.remove(k);
                    }
                }
            }
        }
        if !r.chain.is_empty() {
            kept_aside.push(format!("routing.chain = {:?}", r.chain));
        }
    }

    if !m.use_cases.is_empty() {
        let mut inherited = take_section(&mut doc, "use_cases");
        let mut aot = ArrayOfTables::new();
        for u in &m.use_cases {
            let (mut t, aside) = use_case_table(u);
            if !aside.is_empty() {
                kept_aside.push(format!("use case {}: {}", u.name, aside.join(", ")));
            }
            banner(&mut t, &mut inherited);
            aot.push(t);
        }
        doc.insert("use_cases", Item::ArrayOfTables(aot));
    }

    if !m.models.is_empty() {
        let mut inherited = take_section(&mut doc, "models");
        let mut aot = ArrayOfTables::new();
        for (e, path) in m.models.iter().zip(model_paths) {
            let mut t = model_table(e, path);
            banner(&mut t, &mut inherited);
            aot.push(t);
        }
        doc.insert("models", Item::ArrayOfTables(aot));
    }
    if !m.canaries.is_empty() {
        kept_aside.push(format!("{} canaries", m.canaries.len()));
    }

    let text = doc.to_string();
    let (validation_text, unchecked_credentials) = without_unseen_credentials(&doc);
    Ok(Rendered { text, validation_text, unchecked_credentials, kept_aside })
}

/// Remove a section (array of tables or inline array); return the comments before its first
/// table header.
fn take_section(doc: &mut DocumentMut, key: &str) -> Inherited {
    let first = doc.get(key).and_then(Item::as_array_of_tables).and_then(|a| a.get(0));
    let prefix = first
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .filter(|p| !p.trim().is_empty())
        .map(|p| if p.ends_with('\n') { p.to_string() } else { format!("{p}\n") });
    let position = first.and_then(Table::position);
    doc.remove(key);
    Inherited { prefix, position }
}

/// The largest table position in the document (table headers are printed in this order).
fn max_position(t: &Table) -> isize {
    let mut max = t.position().unwrap_or(0);
    for (_, item) in t.iter() {
        match item {
            Item::Table(sub) => max = max.max(max_position(sub)),
            Item::ArrayOfTables(a) => {
                for sub in a.iter() {
                    max = max.max(max_position(sub));
                }
            }
            _ => {}
        }
    }
    max
}

/// What the new tables of a section take over from the old ones: the comments before the
/// first, and the place in the file.
struct Inherited {
    prefix: Option<String>,
    position: Option<isize>,
}

/// A use case as genset.toml has it today, and the names of the manifest keys left out.
pub fn use_case_table(u: &UseCase) -> (Table, Vec<&'static str>) {
    let mut t = Table::new();
    t.insert("name", toml_edit::value(u.name.as_str()));
    if !u.description.is_empty() {
        t.insert("description", toml_edit::value(u.description.as_str()));
    }
    if let Some(mv) = &u.match_ {
        t.insert("match", Item::Value(to_edit(mv)));
    }
    if let Some(up) = &u.upstream {
        t.insert("upstream", toml_edit::value(up.as_str()));
    }
    let mut aside = vec!["kind", "policy", "thresholds"];
    if u.model.is_some() {
        aside.insert(1, "model");
    }
    if !u.chain.is_empty() {
        aside.insert(1, "chain");
    }
    (t, aside)
}

/// A `[[models]]` entry for the local engine.
pub fn model_table(e: &ModelEntry, path: &Path) -> Table {
    let mut t = Table::new();
    t.insert("name", toml_edit::value(e.name.as_str()));
    t.insert("path", toml_edit::value(path.display().to_string()));
    t.insert("sha256", toml_edit::value(e.sha256.to_ascii_lowercase()));
    t.insert("context", toml_edit::value(i64::from(e.context)));
    t.insert("parallel", toml_edit::value(i64::from(e.parallel)));
    if let Some(c) = &e.chat_template {
        t.insert("chat_template", toml_edit::value(c.as_str()));
    }
    for (k, v) in [("gpu_layers", e.gpu_layers), ("threads", e.threads), ("batch", e.batch)] {
        if let Some(v) = v {
            t.insert(k, toml_edit::value(i64::from(v)));
        }
    }
    t
}

/// A copy of the document without the upstream key sources this process cannot read
/// (a credential outside systemd, an unset environment variable), with a note for each.
fn without_unseen_credentials(doc: &DocumentMut) -> (String, Vec<String>) {
    let mut copy = doc.clone();
    let mut notes = Vec::new();
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY");
    if let Some(aot) = copy.get_mut("upstreams").and_then(Item::as_array_of_tables_mut) {
        for (i, t) in aot.iter_mut().enumerate() {
            if let Some(name) = t.get("api_key_credential").and_then(Item::as_str).map(str::to_string) {
                let readable = creds.as_ref().is_some_and(|d| Path::new(d).join(&name).is_file());
                if !readable {
                    t.remove("api_key_credential");
                    notes.push(format!(
                        "upstreams[{i}].api_key_credential = {name:?}: checked when the service starts (give it with LoadCredential={name}:...)"
                    ));
                }
            }
            if let Some(var) = t.get("api_key_env").and_then(Item::as_str).map(str::to_string)
                && std::env::var_os(&var).is_none()
            {
                t.remove("api_key_env");
                notes.push(format!("upstreams[{i}].api_key_env = {var:?}: not set here; checked when the service starts"));
            }
        }
    }
    (copy.to_string(), notes)
}

/// A `toml` value as a `toml_edit` one; tables become inline tables.
fn to_edit(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string().parse::<toml_edit::Datetime>().unwrap_or_else(|_| unreachable_datetime())),
        toml::Value::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for x in a {
                arr.push(to_edit(x));
            }
            Value::Array(arr)
        }
        toml::Value::Table(t) => {
            let mut it = InlineTable::new();
            for (k, x) in t {
                it.insert(k, to_edit(x));
            }
            Value::InlineTable(it)
        }
    }
}

fn unreachable_datetime() -> toml_edit::Datetime {
    toml_edit::Datetime { date: None, time: None, offset: None }
}
