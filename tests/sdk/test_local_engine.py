"""The local engine through the real daemon, driven by the official SDKs: the test model
(Gemma 3 270M base, Q4_K_M) loaded in-process by gensetd. Answers of a tiny base model are
poor, so the tests assert shape, usage, limits and headers, not wording."""

from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from harness import Gensetd, Secrets

MODEL_PATH = os.environ.get("GENSET_TEST_MODEL") or str(Path.home() / ".cache/genset/models/gemma-3-270m-q4_k_m.gguf")
MODEL_SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@pytest.fixture
def local(start_gensetd) -> Gensetd:
    if not Path(MODEL_PATH).exists():
        pytest.fail(f"test model missing at {MODEL_PATH}: run provisioning/fetch-test-model.sh (scripts/test.sh does)")
    model = {
        "name": "gemma",
        "path": MODEL_PATH,
        "sha256": MODEL_SHA,
        "context": 2048,
        "parallel": 4,
        "threads": 2,
        "chat_template": "gemma",
    }
    return start_gensetd(extra={"models": [model]})


def oa(g: Gensetd, keys: Secrets) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0, timeout=120)


def test_openai_chat_and_stream_served_locally(local: Gensetd, keys: Secrets) -> None:
    raw = oa(local, keys).chat.completions.with_raw_response.create(
        model="local/gemma", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8, temperature=0
    )
    assert raw.headers.get("x-genset-served-by") == "local:gemma"
    done = raw.parse()
    assert done.model == "gemma"
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.completion_tokens <= 8 and done.usage.prompt_tokens > 0

    with oa(local, keys).chat.completions.with_streaming_response.create(
        model="local/gemma",
        messages=[{"role": "user", "content": "Count: one, two,"}],
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        assert resp.headers.get("x-genset-served-by") == "local:gemma"
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[-1].completion_tokens <= 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] in (["length"], ["stop"])
    assert isinstance(text, str)
    # Both exchanges are recorded as served locally, complete.
    rows = local.wait_for_exchange(lambda r: r["served_by"] == "local:gemma" and r["stream"], what="local stream row")
    assert rows["completed"] and rows["completion_tokens"] is not None


def test_anthropic_messages_and_stream_served_locally(local: Gensetd, keys: Secrets) -> None:
    c = anthropic.Anthropic(base_url=local.anthropic_base, api_key=keys.client_anthropic, max_retries=0, timeout=120)
    raw = c.messages.with_raw_response.create(
        model="local/gemma", max_tokens=8, messages=[{"role": "user", "content": "Say hi."}]
    )
    assert raw.headers.get("x-genset-served-by") == "local:gemma"
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.output_tokens <= 8 and msg.usage.input_tokens > 0
    with c.messages.stream(model="local/gemma", max_tokens=8, messages=[{"role": "user", "content": "Say hi."}]) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    assert events[0] == "message_start" and "message_stop" in events
    assert final.stop_reason in ("end_turn", "max_tokens")


def test_header_route_and_concurrency(local: Gensetd, keys: Secrets) -> None:
    client = oa(local, keys)

    def one(i: int) -> tuple[str | None, int]:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Item {i}:"}],
            max_tokens=5,
            temperature=0,
            extra_headers={"x-genset-route": "local"},
        )
        return raw.headers.get("x-genset-served-by"), raw.parse().usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert all(by == "local:gemma" for by, _ in results), results
    assert all(1 <= n <= 5 for _, n in results), results


def test_json_schema_and_errors(local: Gensetd, keys: Secrets) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["colour", "count"],
        "additionalProperties": False,
    }
    done = oa(local, keys).chat.completions.create(
        model="local/gemma",
        messages=[{"role": "user", "content": "Give a colour and a count as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}},
    )
    obj = json.loads(done.choices[0].message.content)
    assert set(obj) == {"colour", "count"} and isinstance(obj["colour"], str) and isinstance(obj["count"], int)

    # An over-long prompt gets the API's context-length error, not a silent wrong answer.
    with pytest.raises(openai.BadRequestError) as e:
        oa(local, keys).chat.completions.create(
            model="local/gemma", messages=[{"role": "user", "content": "word " * 5000}], max_tokens=5
        )
    assert e.value.code == "context_length_exceeded"
    # An unknown local model is named in a clear 404.
    r = httpx.post(
        f"{local.openai_base}/chat/completions",
        json={"model": "local/nope", "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {keys.client_openai}"},
    )
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    # The admin API lists the loaded model with its slots.
    models = httpx.get(f"{local.admin_url}/api/v1/models", headers={"authorization": f"Bearer {local.token}"}).json()
    assert models["items"][0]["name"] == "gemma"


# A Gemma-style Jinja template that renders tools: the GGUF ships none and llama.cpp's
# built-in "gemma" template has no tool support (tools to it are refused by name).
GEMMA_TOOLS_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<start_of_turn>user\n"
    'You can call these tools. To call one, answer with only a JSON object {"name": <tool name>, "arguments": <object>}.\n'
    "{% for t in tools %}{{ t | tojson }}\n{% endfor %}<end_of_turn>\n{% endif %}"
    "{% for m in messages %}<start_of_turn>{% if m.role == 'assistant' %}model{% else %}user{% endif %}\n"
    "{{ m.content | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 24}},
    "required": ["city"],
    "additionalProperties": False,
}


def check_weather_args(args: object) -> None:
    assert isinstance(args, dict) and set(args) == {"city"}, args
    assert isinstance(args["city"], str) and len(args["city"]) <= 24, args


@pytest.fixture
def local_tools(start_gensetd, tmp_path: Path) -> Gensetd:
    if not Path(MODEL_PATH).exists():
        pytest.fail(f"test model missing at {MODEL_PATH}: run provisioning/fetch-test-model.sh (scripts/test.sh does)")
    template = tmp_path / "gemma-tools.jinja"
    template.write_text(GEMMA_TOOLS_TEMPLATE)
    model = {
        "name": "gemma",
        "path": MODEL_PATH,
        "sha256": MODEL_SHA,
        "context": 1024,
        "parallel": 2,
        "threads": 2,
        "chat_template": str(template),
    }
    return start_gensetd(extra={"models": [model]})


def test_forced_tool_calls_parse_in_both_sdks(local_tools: Gensetd, keys: Secrets) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_PARAMS}}]
    client = oa(local_tools, keys)
    done = client.chat.completions.create(
        model="local/gemma", messages=messages, tools=tools, tool_choice="required", max_tokens=60, temperature=0
    )
    assert done.choices[0].finish_reason == "tool_calls"
    call = done.choices[0].message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    check_weather_args(json.loads(call.function.arguments))

    # Streamed, accumulated the way the SDK's stream helper does it.
    with client.chat.completions.stream(
        model="local/gemma",
        messages=messages,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
        temperature=0,
    ) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert not final.choices[0].message.content
    streamed = final.choices[0].message.tool_calls[0]
    assert streamed.function.name == "get_weather"
    check_weather_args(json.loads(streamed.function.arguments))

    c = anthropic.Anthropic(base_url=local_tools.anthropic_base, api_key=keys.client_anthropic, max_retries=0, timeout=120)
    a_tools = [{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_PARAMS}]
    msg = c.messages.create(
        model="local/gemma", max_tokens=60, messages=messages, tools=a_tools, tool_choice={"type": "any"}
    )
    assert msg.stop_reason == "tool_use"
    [block] = msg.content
    assert block.type == "tool_use" and block.id.startswith("toolu_") and block.name == "get_weather"
    check_weather_args(block.input)
    with c.messages.stream(
        model="local/gemma",
        max_tokens=60,
        messages=messages,
        tools=a_tools,
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as s:
        final_msg = s.get_final_message()
    assert final_msg.stop_reason == "tool_use"
    assert [b.type for b in final_msg.content] == ["tool_use"]
    check_weather_args(final_msg.content[0].input)
