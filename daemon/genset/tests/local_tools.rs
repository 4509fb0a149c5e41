//! Tool calls answered by the real test model (Gemma 3 270M) through the daemon: a forced
//! `tool_choice` makes the model write a call that matches the tool's parameters schema, and
//! the answer has the cloud's shape (OpenAI `tool_calls`, Anthropic `tool_use`), whole and
//! streamed. The GGUF ships no chat template and llama.cpp's built-in `gemma` has no tool
//! support, so the model gets a Gemma-style Jinja template that renders the tools.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Daemon, start_daemon};
use serde_json::{Value, json};

const SHA: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

const TEMPLATE: &str = "{{ bos_token }}{% if tools %}<start_of_turn>user\n\
You can call these tools. To call one, answer with only a JSON object {\"name\": <tool name>, \"arguments\": <object>}.\n\
{% for t in tools %}{{ t | tojson }}\n{% endfor %}<end_of_turn>\n{% endif %}\
{% for m in messages %}<start_of_turn>{% if m.role == 'assistant' %}model{% else %}user{% endif %}\n{{ m.content | trim }}<end_of_turn>\n{% endfor %}\
{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

fn model_path() -> std::path::PathBuf {
    let p = match std::env::var_os("GENSET_TEST_MODEL") {
        Some(p) => p.into(),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/genset/models/gemma-3-270m-q4_k_m.gguf"),
    };
    assert!(p.exists(), "the test model is missing at {}: run provisioning/fetch-test-model.sh", p.display());
    p
}

/// The tool's parameters: one required string property (bounded, so a tiny model cannot
/// ramble past max_tokens inside it).
fn parameters() -> Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city", "maxLength": 24}},
        "required": ["city"],
        "additionalProperties": false
    })
}

/// The arguments validate against [`parameters`].
fn assert_valid(args: &Value) {
    let o = args.as_object().unwrap_or_else(|| panic!("arguments are not an object: {args}"));
    let city = o.get("city").and_then(Value::as_str).unwrap_or_else(|| panic!("no string city: {args}"));
    assert!(city.chars().count() <= 24, "{args}");
    assert!(o.keys().all(|k| k == "city"), "{args}");
}

struct Rig {
    d: Daemon,
    key: String,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("gemma-tools.jinja");
    std::fs::write(&template, TEMPLATE).unwrap();
    std::fs::write(dir.path().join("key"), "sk-appliance").unwrap();
    let d = start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_file = \"{}\"\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"openai\"]\n\
         [[models]]\nname = \"gemma\"\npath = \"{}\"\nsha256 = \"{SHA}\"\ncontext = 1024\nparallel = 2\nthreads = 2\nchat_template = \"{}\"\n",
        dir.path().join("key").display(),
        model_path().display(),
        template.display(),
    ))
    .await;
    let key = d.create_key(json!({"use_case": "chat"})).await;
    Rig { d, key, _dir: dir }
}

async fn post(r: &Rig, path: &str, body: Value) -> (reqwest::StatusCode, String) {
    let resp =
        r.d.http.post(format!("{}{path}", r.d.proxy)).bearer_auth(&r.key).header("x-api-key", &r.key).json(&body).send().await.unwrap();
    let status = resp.status();
    if status.is_success() {
        assert_eq!(resp.headers().get("x-genset-served-by").and_then(|v| v.to_str().ok()), Some("local:gemma"));
    }
    (status, resp.text().await.unwrap())
}

/// The `data:` payloads of an SSE body.
fn events(raw: &str) -> Vec<Value> {
    raw.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("malformed event {e}: {d}")))
        .collect()
}

fn openai_body(stream: bool) -> Value {
    json!({
        "model": "local/gemma", "max_tokens": 60, "temperature": 0, "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city", "parameters": parameters()}}],
        "tool_choice": "required"
    })
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "local/gemma", "max_tokens": 60, "temperature": 0, "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"name": "get_weather", "description": "Current weather in a city", "input_schema": parameters()}],
        "tool_choice": {"type": "any"}
    })
}

#[actix_web::test]
async fn a_forced_tool_choice_yields_a_valid_call_on_both_apis() {
    let r = rig().await;

    // OpenAI, whole.
    let (status, body) = post(&r, "/v1/chat/completions", openai_body(false)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert!(choice["message"]["content"].is_null(), "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{v}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_valid(&serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap());

    // OpenAI, streamed: no content, the call in delta.tool_calls, finish_reason tool_calls.
    let (status, raw) = post(&r, "/v1/chat/completions", openai_body(true)).await;
    assert_eq!(status, 200, "{raw}");
    assert!(raw.trim_end().ends_with("data: [DONE]"), "{raw}");
    let chunks = events(&raw);
    assert!(chunks.iter().all(|c| c["choices"][0]["delta"]["content"].as_str().unwrap_or("").is_empty()), "{raw}");
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(deltas[0]["function"]["name"], "get_weather", "{raw}");
    assert!(deltas[0]["id"].as_str().unwrap().starts_with("call_"));
    let args: String = deltas.iter().filter_map(|d| d["function"]["arguments"].as_str()).collect();
    assert_valid(&serde_json::from_str(&args).unwrap());
    let fin: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
    assert_eq!(fin, [&json!("tool_calls")], "{raw}");

    // Anthropic, whole.
    let (status, body) = post(&r, "/v1/messages", anthropic_body(false)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let blocks = v["content"].as_array().unwrap();
    assert_eq!(blocks.len(), 1, "{v}");
    assert_eq!(blocks[0]["type"], "tool_use");
    assert!(blocks[0]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(blocks[0]["name"], "get_weather");
    assert_valid(&blocks[0]["input"]);

    // Anthropic, streamed: a tool_use block at index 0, its input in input_json_delta.
    let (status, raw) = post(&r, "/v1/messages", anthropic_body(true)).await;
    assert_eq!(status, 200, "{raw}");
    let evs = events(&raw);
    let start = evs.iter().find(|e| e["type"] == "content_block_start").unwrap();
    assert_eq!(start["index"], 0);
    assert_eq!(start["content_block"]["type"], "tool_use", "{raw}");
    assert_eq!(start["content_block"]["name"], "get_weather");
    assert!(evs.iter().all(|e| e["delta"]["type"] != "text_delta"), "{raw}");
    let json: String =
        evs.iter().filter(|e| e["delta"]["type"] == "input_json_delta").filter_map(|e| e["delta"]["partial_json"].as_str()).collect();
    assert_valid(&serde_json::from_str(&json).unwrap());
    let delta = evs.iter().find(|e| e["type"] == "message_delta").unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs.last().unwrap()["type"], "message_stop");

    r.d.shutdown().await;
}

#[actix_web::test]
async fn tools_to_a_template_without_tool_support_are_refused_by_name() {
    // The built-in gemma template cannot render tools: a clear error, not an answer that
    // silently ignores them.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "sk-appliance").unwrap();
    let d = start_daemon(&format!(
        "[[upstreams]]\nname = \"openai\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_file = \"{}\"\n\
         [[use_cases]]\nname = \"chat\"\nmatch = {{ header = \"x-genset-use-case\", value = \"chat\" }}\nchain = [\"openai\"]\n\
         [[models]]\nname = \"gemma\"\npath = \"{}\"\nsha256 = \"{SHA}\"\ncontext = 1024\nparallel = 1\nthreads = 2\nchat_template = \"gemma\"\n",
        dir.path().join("key").display(),
        model_path().display(),
    ))
    .await;
    let key = d.create_key(json!({"use_case": "chat"})).await;
    let r = Rig { d, key, _dir: dir };
    let (status, body) = post(&r, "/v1/chat/completions", openai_body(false)).await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "unsupported_feature", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("tools"), "{v}");
    r.d.shutdown().await;
}
