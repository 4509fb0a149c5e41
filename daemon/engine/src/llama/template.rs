//! Chat templates: the GGUF's (or a file's) Jinja template rendered with minijinja, or one of
//! llama.cpp's built-in named templates.

use std::time::{SystemTime, UNIX_EPOCH};

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::{ChatMessage, EngineError};

pub(crate) enum ChatTemplate {
    /// A llama.cpp built-in template (`gemma`, `chatml`, ...). No tool support.
    Builtin { name: String, template: LlamaChatTemplate },
    /// A Jinja template (Hugging Face conventions).
    Jinja { origin: String, env: Box<Environment<'static>>, supports_tools: bool, bos: String, eos: String },
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[derive(Serialize)]
struct Ctx<'a> {
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    tools: Option<&'a [serde_json::Value]>,
    add_generation_prompt: bool,
    bos_token: &'a str,
    eos_token: &'a str,
}

impl ChatTemplate {
    /// The template to use: the configured one (a built-in name or a Jinja file), else the
    /// GGUF's `tokenizer.chat_template`, else none (chat requests are then refused).
    pub(crate) fn resolve(model: &LlamaModel, configured: Option<&str>) -> Result<Option<Self>, String> {
        let (bos, eos) = special_texts(model);
        match configured {
            Some(c) if looks_like_path(c) => {
                let source = std::fs::read_to_string(c).map_err(|e| format!("cannot read Jinja template {c}: {e}"))?;
                Self::jinja(format!("file {c}"), source, bos, eos).map(Some)
            }
            Some(name) => {
                let template = LlamaChatTemplate::new(name).map_err(|_| format!("invalid template name {name:?}"))?;
                let probe = [LlamaChatMessage::new("user".into(), "hi".into()).map_err(|e| e.to_string())?];
                model.apply_chat_template(&template, &probe, true).map_err(|_| {
                    format!(
                        "{name:?} is not one of llama.cpp's built-in chat templates (e.g. gemma, chatml, llama3, mistral-v7, phi4) nor a path to a Jinja file"
                    )
                })?;
                Ok(Some(ChatTemplate::Builtin { name: name.to_owned(), template }))
            }
            None => match model.chat_template(None) {
                Ok(t) => {
                    let source = t.to_string().map_err(|e| format!("the GGUF's chat template is not UTF-8: {e}"))?;
                    Self::jinja("the GGUF's tokenizer.chat_template".into(), source, bos, eos).map(Some)
                }
                Err(_) => Ok(None),
            },
        }
    }

    pub(crate) fn jinja(origin: String, source: String, bos: String, eos: String) -> Result<Self, String> {
        let supports_tools = source.contains("tools");
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_template_owned("chat", source).map_err(|e| format!("the chat template ({origin}) does not parse: {e}"))?;
        Ok(ChatTemplate::Jinja { origin, env: Box::new(env), supports_tools, bos, eos })
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            ChatTemplate::Builtin { name, .. } => format!("built-in template {name:?}"),
            ChatTemplate::Jinja { origin, .. } => format!("Jinja template from {origin}"),
        }
    }

    pub(crate) fn render(&self, model: &LlamaModel, messages: &[ChatMessage], tools: &[serde_json::Value]) -> Result<String, EngineError> {
        if messages.is_empty() {
            return Err(EngineError::InvalidRequest("messages: at least one message is required".into()));
        }
        let uses_tools = !tools.is_empty() || messages.iter().any(ChatMessage::uses_tools);
        match self {
            ChatTemplate::Builtin { name, template } => {
                if uses_tools {
                    return Err(EngineError::Unsupported(format!(
                        "tools: the model's chat template (built-in {name:?}) has no tool support"
                    )));
                }
                let chat = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| EngineError::InvalidRequest("messages: content contains a NUL character".into()))?;
                model
                    .apply_chat_template(template, &chat, true)
                    .map_err(|e| EngineError::Internal(format!("chat template {name:?} failed: {e}")))
            }
            ChatTemplate::Jinja { env, supports_tools, bos, eos, origin } => {
                if uses_tools && !supports_tools {
                    return Err(EngineError::Unsupported(format!("tools: the model's chat template ({origin}) has no tool support")));
                }
                let ctx = Ctx {
                    messages,
                    tools: (!tools.is_empty()).then_some(tools),
                    add_generation_prompt: true,
                    bos_token: bos,
                    eos_token: eos,
                };
                let tmpl = env.get_template("chat").map_err(|e| EngineError::Internal(e.to_string()))?;
                tmpl.render(Value::from_serialize(&ctx)).map_err(|e| {
                    if e.kind() == ErrorKind::InvalidOperation {
                        // raise_exception: the template refused the conversation (say, roles
                        // that do not alternate).
                        EngineError::InvalidRequest(format!("the chat template refused the messages: {}", e.detail().unwrap_or("")))
                    } else {
                        EngineError::Internal(format!("chat template failed: {e}"))
                    }
                })
            }
        }
    }
}

fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.ends_with(".jinja") || s.ends_with(".j2")
}

fn special_texts(model: &LlamaModel) -> (String, String) {
    let vocab = model.vocab();
    let text = |t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
    (text(vocab.bos()), text(vocab.eos()))
}

/// `strftime_now` for templates (Llama 3 puts today's date in the system prompt). Supports
/// `%d %m %Y %y %b %B %H %M %S %%`; UTC.
fn strftime_now(fmt: &str) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    strftime(fmt, secs)
}

fn strftime(fmt: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mname = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&mname[..3]),
            Some('B') => out.push_str(mname),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS_TEMPLATE: &str = "{{ bos_token }}{% if tools %}TOOLS:{{ tools | tojson }}\n{% endif %}\
{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}</{{ m.role }}>\n{% endfor %}\
{% if add_generation_prompt %}<assistant>{% endif %}";

    fn render(src: &str, msgs: &[ChatMessage], tools: &[serde_json::Value]) -> Result<String, EngineError> {
        let t = ChatTemplate::jinja("test".into(), src.into(), "<s>".into(), "</s>".into()).unwrap();
        let ChatTemplate::Jinja { env, .. } = &t else { unreachable!() };
        let ctx = Ctx {
            messages: msgs,
            tools: (!tools.is_empty()).then_some(tools),
            add_generation_prompt: true,
            bos_token: "<s>",
            eos_token: "</s>",
        };
        env.get_template("chat").unwrap().render(Value::from_serialize(&ctx)).map_err(|e| EngineError::Internal(e.to_string()))
    }

    #[test]
    fn jinja_renders_messages_and_tools() {
        let msgs = vec![ChatMessage::new("system", " be brief "), ChatMessage::new("user", "hi")];
        let tools = vec![serde_json::json!({"type":"function","function":{"name":"get_weather"}})];
        let out = render(TOOLS_TEMPLATE, &msgs, &tools).unwrap();
        assert!(out.starts_with("<s>TOOLS:["), "{out}");
        assert!(out.contains("get_weather"));
        assert!(out.contains("<system>be brief</system>"));
        assert!(out.ends_with("<assistant>"));
        let out = render(TOOLS_TEMPLATE, &msgs, &[]).unwrap();
        assert!(!out.contains("TOOLS"));
    }

    #[test]
    fn pycompat_methods_and_raise_exception() {
        let src = "{% for m in messages %}{% if m.role not in ['user','assistant'] %}{{ raise_exception('roles must alternate') }}{% endif %}{{ m.content.strip().upper() }}{% endfor %}";
        let out = render(src, &[ChatMessage::new("user", " hey ")], &[]).unwrap();
        assert_eq!(out, "HEY");
        let err = ChatTemplate::jinja("t".into(), src.into(), String::new(), String::new()).unwrap();
        let ChatTemplate::Jinja { env, .. } = &err else { unreachable!() };
        let msgs = [ChatMessage::new("system", "x")];
        let ctx = Ctx { messages: &msgs, tools: None, add_generation_prompt: true, bos_token: "", eos_token: "" };
        let e = env.get_template("chat").unwrap().render(Value::from_serialize(&ctx)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOperation);
    }

    #[test]
    fn bad_template_is_refused_at_load() {
        assert!(ChatTemplate::jinja("t".into(), "{% for %}".into(), String::new(), String::new()).is_err());
    }

    #[test]
    fn strftime_formats() {
        // 2024-07-26 15:05:09 UTC
        assert_eq!(strftime("%d %b %Y %H:%M:%S %B %m %y %%", 1_722_006_309), "26 Jul 2024 15:05:09 July 07 24 %");
    }
}
