"""Bad input gets a clear error in the API's own format, nothing is half-forwarded upstream,
and the process stays up."""

from __future__ import annotations

import json
import socket
from typing import Callable, Iterator

import httpx
import openai
import anthropic
import pytest

from harness import Gensetd, Secrets, Sim, anthropic_error, openai_error, strip_volatile, truthy

OPENAI = ("openai", "/v1/chat/completions", openai_error)
ANTHROPIC = ("anthropic", "/v1/messages", anthropic_error)


def hdrs(flavor: str, keys: Secrets, content_type: str | None = "application/json") -> dict[str, str]:
    h = {"authorization": f"Bearer {keys.client_openai}"} if flavor == "openai" else {
        "x-api-key": keys.client_anthropic, "anthropic-version": "2023-06-01"}
    if content_type:
        h["content-type"] = content_type
    return h


def good_body(flavor: str, text: str = "say: x") -> dict[str, object]:
    b: dict[str, object] = {"model": "gpt-4o-mini" if flavor == "openai" else "claude-haiku-4-5",
                            "messages": [{"role": "user", "content": text}]}
    if flavor == "anthropic":
        b["max_tokens"] = 16
    return b


@pytest.fixture
def small(start_gensetd) -> Gensetd:  # type: ignore[no-untyped-def]
    return start_gensetd(max_body="64KiB")


CASES: dict[str, Callable[[str], tuple[bytes, str | None, set[int]]]] = {
    "invalid-json": lambda f: (b'{"model": "gpt-4o-mini", "messages": [', "application/json", {400}),
    "empty-body": lambda f: (b"", "application/json", {400}),
    "wrong-content-type": lambda f: (json.dumps(good_body(f)).encode(), "text/plain", {400, 415}),
    "form-content-type": lambda f: (b"model=gpt-4o-mini", "application/x-www-form-urlencoded", {400, 415}),
    "invalid-utf8": lambda f: (b'{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"\xff\xfe\xc3("}]}', "application/json", {400}),
    "over-max-body": lambda f: (json.dumps(good_body(f, "say: " + "a" * 100_000)).encode(), "application/json", {413}),
}


@pytest.mark.parametrize("flavor,path,check", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_request(small: Gensetd, sim: Sim, keys: Secrets, case: str, flavor: str, path: str, check: Callable[[httpx.Response], dict]) -> None:  # type: ignore[type-arg]
    body, ctype, statuses = CASES[case](flavor)
    r = small.proxy.post(path, content=body, headers=hdrs(flavor, keys, ctype))
    assert r.status_code in statuses, f"{case}: {r.status_code} {r.text[:500]}"
    err = check(r)
    assert len(err["message"]) > 5
    assert sim.last_request() is None, f"{case}: the request was forwarded upstream"
    small.assert_alive()
    # and the next good request still works
    ok = small.proxy.post(path, json=good_body(flavor), headers=hdrs(flavor, keys))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("flavor,path,check", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
def test_over_max_body_chunked(small: Gensetd, sim: Sim, keys: Secrets, flavor: str, path: str, check: Callable[[httpx.Response], dict]) -> None:  # type: ignore[type-arg]
    """Without a Content-Length the limit still holds (no unbounded read)."""

    def gen() -> Iterator[bytes]:
        yield b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"'
        for _ in range(200):
            yield b"a" * 1024
        yield b'"}]}'

    try:
        r = small.proxy.post(path, content=gen(), headers=hdrs(flavor, keys))
    except (httpx.RemoteProtocolError, httpx.WriteError):
        pytest.fail("gensetd closed the connection instead of answering 413")
    assert r.status_code == 413, r.text[:300]
    check(r)
    assert sim.last_request() is None
    small.assert_alive()


def test_unknown_path_and_method(gensetd: Gensetd, keys: Secrets, sim: Sim) -> None:
    for method, path in (("POST", "/v1/nonexistent"), ("GET", "/v2/chat"), ("GET", "/"), ("DELETE", "/v1/models")):
        r = gensetd.proxy.request(method, path, headers=hdrs("openai", keys))
        assert r.status_code in (404, 405), (method, path, r.status_code)
        openai_error(r)
    r = gensetd.proxy.get("/v1/messages", headers=hdrs("anthropic", keys))
    assert r.status_code in (404, 405)
    anthropic_error(r)
    r = gensetd.proxy.post("/v1/messages/nonexistent", headers=hdrs("anthropic", keys), json={})
    assert r.status_code == 404
    anthropic_error(r)
    assert sim.last_request() is None
    gensetd.assert_alive()


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
def test_upstream_unreachable(start_gensetd, keys: Secrets, stream: bool) -> None:  # type: ignore[no-untyped-def]
    port = free_port()  # nothing listens there
    g: Gensetd = start_gensetd(upstreams=[
        {"name": "dead-openai", "api": "openai", "base_url": f"http://127.0.0.1:{port}/v1"},
        {"name": "dead-anthropic", "api": "anthropic", "base_url": f"http://127.0.0.1:{port}"},
    ])
    for flavor, path, check in (OPENAI, ANTHROPIC):
        body = good_body(flavor)
        body["stream"] = stream
        r = g.proxy.post(path, json=body, headers=hdrs(flavor, keys))
        assert r.status_code in (502, 503, 504), (flavor, r.status_code, r.text)
        check(r)
    with pytest.raises(openai.APIStatusError):
        openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError):
        anthropic.Anthropic(base_url=g.anthropic_base, api_key=keys.client_anthropic, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    g.assert_alive()
    # failures are recorded too
    row = g.wait_for_exchange(lambda it: int(it["status"]) >= 500, what="a recorded upstream failure")
    assert not truthy(row["completed"]), row


@pytest.mark.parametrize("mode", ["refuse", "reset"])
def test_upstream_connection_faults(gensetd: Gensetd, sim: Sim, keys: Secrets, mode: str) -> None:
    if mode == "refuse":
        sim.fault("refuse")  # the API port is closed until the fault is cleared
    try:
        for flavor, path, check in (OPENAI, ANTHROPIC):
            if mode != "refuse":
                sim.fault(mode, count=1)
            r = gensetd.proxy.post(path, json=good_body(flavor), headers=hdrs(flavor, keys))
            assert r.status_code in (502, 503, 504), (mode, flavor, r.status_code, r.text)
            check(r)
    finally:
        sim.clear_fault()
    gensetd.assert_alive()
    ok = gensetd.proxy.post("/v1/chat/completions", json=good_body("openai"), headers=hdrs("openai", keys))
    assert ok.status_code == 200


@pytest.mark.parametrize("mode", ["context_length", "content_policy", "quota", "rate_limit", "http_503", "http_529"])
def test_upstream_api_errors_pass_through(gensetd: Gensetd, sim: Sim, keys: Secrets, mode: str) -> None:
    """When no step of the chain can do better, the cloud's own errors reach the client as the
    cloud sent them (status, body, Retry-After). Transient ones (429, 5xx) are retried first,
    within failover.max_attempts; the request's own faults (context length, content policy)
    never are."""
    extra = {"retry_after": 7} if mode == "http_503" else {}
    transient = mode in ("rate_limit", "http_503", "http_529")
    for flavor, path, check in (OPENAI, ANTHROPIC):
        sim.fault(mode, count=1, **extra)
        direct = httpx.post(sim.url + path, json=good_body(flavor), headers=hdrs(flavor, keys), timeout=10)
        assert direct.status_code >= 400, (mode, flavor, direct.status_code)
        before = sim.stats()["by_path"].get(path, 0)
        sim.fault(mode, **extra)  # persistent: every attempt fails the same way
        try:
            r = gensetd.proxy.post(path, json=good_body(flavor), headers=hdrs(flavor, keys))
        finally:
            sim.clear_fault()
        attempts = sim.stats()["by_path"].get(path, 0) - before
        # Retry-After 7 s is longer than failover.max_retry_wait: handed back at once.
        want = 3 if transient and mode != "http_503" else 1
        assert attempts == want, (mode, flavor, attempts)
        assert r.status_code == direct.status_code, (mode, flavor, r.status_code, r.text)
        check(r)
        assert strip_volatile(r.json()) == strip_volatile(direct.json())
        if "retry-after" in direct.headers:
            assert r.headers.get("retry-after") == direct.headers["retry-after"], (mode, flavor)
    gensetd.assert_alive()
