"""The official `anthropic` SDK, pointed at gensetd instead of the cloud (only base_url changes)."""

from __future__ import annotations

import anthropic

from harness import Gensetd, Secrets, marker

MODEL = "claude-haiku-4-5"


def client(g: Gensetd, keys: Secrets) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=g.anthropic_base, api_key=keys.client_anthropic, max_retries=0, timeout=30)


def test_messages_sync(gensetd: Gensetd, keys: Secrets) -> None:
    m = marker()
    raw = client(gensetd, keys).messages.with_raw_response.create(
        model=MODEL, max_tokens=128, messages=[{"role": "user", "content": f"say: hello {m}"}]
    )
    assert raw.headers.get("x-genset-served-by") == "cloud:sim-anthropic"
    assert raw.headers.get("x-genset-use-case") == "unclassified"
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == f"hello {m}"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


def test_messages_stream(gensetd: Gensetd, keys: Secrets) -> None:
    m = marker()
    text = f"the quick brown fox {m} jumps over the lazy dog"
    with client(gensetd, keys).messages.stream(
        model=MODEL, max_tokens=128, messages=[{"role": "user", "content": f"say: {text}"}]
    ) as stream:
        assert stream.response.headers.get("x-genset-served-by") == "cloud:sim-anthropic"
        assert stream.response.headers.get("content-type", "").startswith("text/event-stream")
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_system_prompt_and_multi_turn(gensetd: Gensetd, keys: Secrets) -> None:
    m = marker()
    msg = client(gensetd, keys).messages.create(
        model=MODEL,
        max_tokens=64,
        system="You are terse.",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": f"say: {m}"}]},
        ],
    )
    assert msg.content[0].text == m


def test_count_tokens(gensetd: Gensetd, keys: Secrets) -> None:
    raw = client(gensetd, keys).messages.with_raw_response.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "how many tokens is this?"}]
    )
    assert raw.headers.get("x-genset-served-by") == "cloud:sim-anthropic"
    assert raw.parse().input_tokens > 0


def test_models_list_goes_to_anthropic_upstream(gensetd: Gensetd, keys: Secrets) -> None:
    """GET /v1/models is shared by both APIs: Anthropic clients (anthropic-version / x-api-key) reach the Anthropic upstream."""
    raw = client(gensetd, keys).models.with_raw_response.list()
    assert raw.headers.get("x-genset-served-by") == "cloud:sim-anthropic"
    page = raw.parse()
    assert page.data and all(m.type == "model" for m in page.data)
