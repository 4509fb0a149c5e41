"""The official `openai` SDK, pointed at gensetd instead of the cloud (only base_url changes)."""

from __future__ import annotations

import httpx
import openai
import pytest

from harness import Gensetd, Secrets, Sim, marker


def client(g: Gensetd, keys: Secrets) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0, timeout=30)


def test_chat_sync(gensetd: Gensetd, keys: Secrets) -> None:
    m = marker()
    raw = client(gensetd, keys).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: hello {m}"}]
    )
    assert raw.headers.get("x-genset-served-by") == "cloud:sim-openai"
    assert raw.headers.get("x-genset-use-case") == "unclassified"
    done = raw.parse()
    assert done.object == "chat.completion"
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == f"hello {m}"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0


def test_chat_stream(gensetd: Gensetd, keys: Secrets) -> None:
    m = marker()
    text = f"the quick brown fox {m} jumps over the lazy dog"
    with client(gensetd, keys).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"say: {text}"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as resp:
        assert resp.headers.get("content-type", "").startswith("text/event-stream")
        assert resp.headers.get("x-genset-served-by") == "cloud:sim-openai"
        assert resp.headers.get("x-genset-use-case") == "unclassified"
        parts: list[str] = []
        finish = None
        usage = None
        chunks = 0
        for chunk in resp.parse():
            chunks += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta.content:
                    parts.append(c.delta.content)
                if c.finish_reason:
                    finish = c.finish_reason
    assert "".join(parts) == text
    assert chunks > 1, "expected the answer in several chunks"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


def test_completions_sync_and_stream(gensetd: Gensetd, keys: Secrets) -> None:
    c = client(gensetd, keys)
    m = marker()
    raw = c.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt=f"say: {m}", max_tokens=32)
    assert raw.headers.get("x-genset-served-by") == "cloud:sim-openai"
    done = raw.parse()
    assert done.object == "text_completion"
    assert isinstance(done.choices[0].text, str) and done.choices[0].text
    stream = c.completions.create(model="gpt-3.5-turbo-instruct", prompt=f"say: {m} again", max_tokens=32, stream=True)
    text = "".join(ch.choices[0].text for ch in stream if ch.choices)
    assert text


def test_embeddings(gensetd: Gensetd, keys: Secrets) -> None:
    c = client(gensetd, keys)
    # The SDK asks for base64 by default and decodes it; ask for floats too.
    for fmt in (openai.NOT_GIVEN, "float"):
        raw = c.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["hello", "world"], encoding_format=fmt
        )
        assert raw.headers.get("x-genset-served-by") == "cloud:sim-openai"
        emb = raw.parse()
        assert len(emb.data) == 2
        for d in emb.data:
            assert len(d.embedding) > 0 and all(isinstance(x, float) for x in d.embedding)


def test_models_list_matches_upstream(gensetd: Gensetd, keys: Secrets, sim: Sim) -> None:
    models = client(gensetd, keys).models.list()
    ids = [m.id for m in models.data]
    assert ids, "no models listed"
    direct = openai.OpenAI(base_url=sim.openai_base, api_key=keys.client_openai, max_retries=0).models.list()
    assert ids == [m.id for m in direct.data]


def test_responses_route_passes_through(gensetd: Gensetd, keys: Secrets, sim: Sim) -> None:
    """POST /v1/responses reaches the upstream and its answer comes back unchanged, byte for
    byte (the simulator's `stable_ids`: the same request gets the same bytes)."""
    assert sim.config(stable_ids=True)["stable_ids"] is True
    body = {"model": "gpt-4o-mini", "input": "say: responses route"}
    h = {"authorization": f"Bearer {keys.client_openai}"}
    direct = httpx.post(sim.openai_base + "/responses", json=body, headers=h, timeout=10)
    via = gensetd.proxy.post("/v1/responses", json=body, headers=h)
    assert via.status_code == direct.status_code
    assert via.headers.get("x-genset-served-by") == "cloud:sim-openai"
    last = sim.last_request()
    assert last is not None and last["path"].endswith("/responses")
    if direct.status_code == 200:
        assert direct.content == via.content
    else:
        pytest.skip(f"the simulator does not implement /v1/responses (answered {direct.status_code})")
