"""Pass-through fidelity: what the client sends reaches the upstream unchanged, and what the
upstream answers reaches the client unchanged, streams included, chunk by chunk."""

from __future__ import annotations

import json
import time

import httpx

from harness import Gensetd, Secrets, Sim, header_of, marker, poll, strip_volatile, text_of, truthy


def fetch_raw(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, bytes, int]:
    with client.stream("POST", url, content=body, headers=headers) as r:
        raw = b""
        n = 0
        for chunk in r.iter_raw():
            raw += chunk
            n += 1
        return r, raw, n


def assert_same_bytes(direct: bytes, via: bytes, what: str) -> None:
    """Exact equality. The simulator runs with `stable_ids` on (ids and `created` derived from
    the request), so the direct and the proxied answer to the same request are the same bytes
    unless the proxy changed them."""
    assert direct == via, f"{what}: proxy changed the bytes\n--- direct\n{direct[:2000]!r}\n--- via genset\n{via[:2000]!r}"


def test_openai_stream_byte_identical(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    assert sim.config(stable_ids=True)["stable_ids"] is True
    m = marker()
    body = json.dumps(
        {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
         "messages": [{"role": "user", "content": f"say: one two three four five six {m}"}]}
    ).encode()
    h = {"authorization": f"Bearer {keys.client_openai}", "content-type": "application/json"}
    with httpx.Client(timeout=30) as c:
        rd, direct, _ = fetch_raw(c, sim.openai_base + "/chat/completions", body, h)
        rv, via, _ = fetch_raw(c, gensetd.openai_base + "/chat/completions", body, h)
    assert rd.status_code == rv.status_code == 200
    assert rv.headers["content-type"] == rd.headers["content-type"]
    assert direct.rstrip().endswith(b"data: [DONE]"), direct[-200:]
    assert direct.count(b"data: ") > 3, "expected a multi-chunk stream from the simulator"
    assert_same_bytes(direct, via, "OpenAI stream")


def test_anthropic_stream_byte_identical(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    assert sim.config(stable_ids=True)["stable_ids"] is True
    m = marker()
    body = json.dumps(
        {"model": "claude-haiku-4-5", "max_tokens": 100, "stream": True,
         "messages": [{"role": "user", "content": f"say: one two three four five six {m}"}]}
    ).encode()
    h = {"x-api-key": keys.client_anthropic, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    with httpx.Client(timeout=30) as c:
        rd, direct, _ = fetch_raw(c, sim.anthropic_base + "/v1/messages", body, h)
        rv, via, _ = fetch_raw(c, gensetd.anthropic_base + "/v1/messages", body, h)
    assert rd.status_code == rv.status_code == 200
    assert rv.headers["content-type"] == rd.headers["content-type"]
    assert b"event: message_stop" in direct
    assert_same_bytes(direct, via, "Anthropic stream")


def test_non_stream_byte_identical(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    assert sim.config(stable_ids=True)["stable_ids"] is True
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say: exact bytes"}]}).encode()
    h = {"authorization": f"Bearer {keys.client_openai}", "content-type": "application/json"}
    direct = httpx.post(sim.openai_base + "/chat/completions", content=body, headers=h, timeout=10)
    via = gensetd.proxy.post("/v1/chat/completions", content=body, headers=h)
    assert direct.status_code == via.status_code == 200
    assert_same_bytes(direct.content, via.content, "OpenAI chat completion")


def test_request_reaches_upstream_unchanged(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    """Unknown fields, odd whitespace, key order, escapes, tools and images: the upstream gets the client's bytes."""
    m = marker()
    body = (
        b'{ "zz_unknown": {"nested": [1, 2.50, "\\u00e9\\n", null]},  "model":"gpt-4o-mini",\n'
        b'"messages":[{"role":"user","content":[{"type":"text","text":"say: ' + m.encode() + b'"},'
        b'{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],'
        b'"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}] }'
    )
    r = gensetd.proxy.post(
        "/v1/chat/completions",
        content=body,
        headers={
            "authorization": f"Bearer {keys.client_openai}",
            "content-type": "application/json",
            "openai-organization": "org-genset-test",
            "x-custom-trace": m,
        },
    )
    assert r.status_code == 200, r.text
    last = sim.last_request()
    assert last is not None and last["path"].endswith("/chat/completions")
    got = last["body"]
    if isinstance(got, str):
        assert got.encode() == body, f"upstream got different bytes:\n{got!r}"
    else:
        assert got == json.loads(body)
    assert header_of(last, "openai-organization") == "org-genset-test"
    assert header_of(last, "x-custom-trace") == m
    assert header_of(last, "authorization") == f"Bearer {keys.client_openai}"  # passthrough config


def test_stream_forwarded_before_upstream_finishes(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    """No buffering: while the upstream stalls mid-stream, the client already has the first chunks.
    Then the client goes away: the exchange is recorded as not completed, without waiting for the
    (still stalled) upstream."""
    sim.fault("stall_mid_stream", count=1, after_chunks=2)
    m = marker()
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": f"say: a b c d e f g h {m}"}]}
    h = {"authorization": f"Bearer {keys.client_openai}"}
    try:
        t0 = time.monotonic()
        with httpx.Client(timeout=httpx.Timeout(10, read=5)) as c:
            with c.stream("POST", gensetd.openai_base + "/chat/completions", json=body, headers=h) as r:
                assert r.status_code == 200
                first = next(r.iter_raw())
                assert b"data: " in first
                got_first_after = time.monotonic() - t0
        assert got_first_after < 5
    finally:
        sim.clear_fault()  # the upstream goes on; genset finds its client gone
    row = gensetd.wait_for_marker(m)
    assert truthy(row["stream"]) and not truthy(row["completed"]), row
    gensetd.assert_alive()


def test_headers_on_every_route(gensetd: Gensetd, keys: Secrets) -> None:
    h = {"authorization": f"Bearer {keys.client_openai}"}
    r = gensetd.proxy.get("/v1/models", headers=h)
    assert r.status_code == 200
    assert r.headers.get("x-genset-served-by") == "cloud:sim-openai"
    assert r.headers.get("x-genset-use-case")
    ha = {"x-api-key": keys.client_anthropic, "anthropic-version": "2023-06-01"}
    r = gensetd.proxy.post(
        "/v1/messages/count_tokens", json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}, headers=ha
    )
    assert r.status_code == 200, r.text
    assert r.headers.get("x-genset-served-by") == "cloud:sim-anthropic"
    assert r.headers.get("x-genset-use-case") == "unclassified"


def test_upstream_error_passes_through(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    """An upstream 429/500 that retries cannot get past (the fault persists, no other step in the
    chain) reaches the client as the cloud sent it, with its body and Retry-After."""
    h = {"authorization": f"Bearer {keys.client_openai}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say: x"}]}
    for mode in ("rate_limit", "http_500"):
        sim.fault(mode, count=1)
        direct = httpx.post(sim.openai_base + "/chat/completions", json=body, headers=h, timeout=10)
        sim.fault(mode)
        try:
            via = gensetd.proxy.post("/v1/chat/completions", json=body, headers=h)
        finally:
            sim.clear_fault()
        assert via.status_code == direct.status_code >= 400, (mode, via.status_code, via.text)
        assert strip_volatile(via.json()) == strip_volatile(direct.json())
        if "retry-after" in direct.headers:
            assert via.headers.get("retry-after") == direct.headers["retry-after"]
    sim.clear_fault()
    row = poll(lambda: [it for it in gensetd.traffic()["items"] if it["status"] == 500], what="recorded 500")[0]
    assert "error" in text_of(row["response_body"])
