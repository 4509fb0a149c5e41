"""An upstream stream that breaks: the client sees an error, never a clean end, and the
exchange is recorded with completed = false."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from harness import Gensetd, Secrets, Sim, marker, text_of, truthy

# What a client may see when its stream breaks. anthropic >= 2.x ships its own httpx fork, `httpx2`.
_errs: list[type[BaseException]] = [openai.APIError, anthropic.APIError, httpx.HTTPError]
try:
    import httpx2  # type: ignore[import-not-found]

    _errs.append(httpx2.HTTPError)
except ImportError:
    pass
CLIENT_ERRORS = tuple(_errs)


def test_openai_cut_mid_stream(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    sim.fault("cut_mid_stream", count=1)
    m = marker()
    text = f"one two three four five six seven eight nine ten {m}"
    c = openai.OpenAI(base_url=gensetd.openai_base, api_key=keys.client_openai, max_retries=0)
    got: list[str] = []
    with pytest.raises(CLIENT_ERRORS):
        for ch in c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: {text}"}], stream=True):
            if ch.choices and ch.choices[0].delta.content:
                got.append(ch.choices[0].delta.content)
    assert "".join(got) != text
    row = gensetd.wait_for_marker(m)
    assert truthy(row["stream"]) and not truthy(row["completed"]), row
    gensetd.assert_alive()


def test_anthropic_cut_mid_stream(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    sim.fault("cut_mid_stream", count=1)
    m = marker()
    c = anthropic.Anthropic(base_url=gensetd.anthropic_base, api_key=keys.client_anthropic, max_retries=0)
    with pytest.raises(CLIENT_ERRORS):
        with c.messages.stream(model="claude-haiku-4-5", max_tokens=64,
                               messages=[{"role": "user", "content": f"say: one two three four five six {m}"}]) as s:
            for _ in s.text_stream:
                pass
            s.get_final_message()
    row = gensetd.wait_for_marker(m)
    assert truthy(row["stream"]) and not truthy(row["completed"]), row
    gensetd.assert_alive()


def test_raw_cut_is_not_a_clean_end(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    """At the HTTP level: with no step left to continue the answer, the body ends with an
    in-band error event in the API's format, and never with [DONE]."""
    sim.fault("cut_mid_stream", count=1)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "say: a b c d e f g h i j"}]}
    raw = b""
    try:
        with httpx.stream("POST", gensetd.openai_base + "/chat/completions", json=body,
                          headers={"authorization": f"Bearer {keys.client_openai}"}, timeout=15) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                raw += chunk
    except httpx.HTTPError:
        pass
    assert b"[DONE]" not in raw, raw
    assert b'data: {"error"' in raw, raw


def test_missing_done_after_the_finish_is_completed(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    """The upstream sent the whole answer and its finish_reason but no [DONE]: the answer is
    complete, so genset ends the stream properly; the upstream's attempt is recorded as broken."""
    sim.fault("missing_done", count=1)
    m = marker()
    c = openai.OpenAI(base_url=gensetd.openai_base, api_key=keys.client_openai, max_retries=0)
    text = "".join((ch.choices[0].delta.content or "") for ch in c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: a b c {m}"}], stream=True) if ch.choices)
    assert text == f"a b c {m}"
    row = gensetd.wait_for_exchange(lambda it: m in text_of(it.get("request_body")) and truthy(it.get("final_attempt", True)),
                                    what="the final row")
    assert truthy(row["completed"]), row
    gensetd.assert_alive()


def test_malformed_chunk_never_reaches_the_client(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    """A malformed event from the upstream is not passed on as if valid: with nothing to continue
    the answer, the stream ends with an in-band error and is recorded as not completed."""
    m = marker()
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": f"say: a b c d e f {m}"}]}
    with httpx.Client(timeout=15) as c:
        sim.fault("malformed_chunk", count=1)
        via = c.post(gensetd.openai_base + "/chat/completions", json=body, headers={"authorization": f"Bearer {keys.client_openai}"}).content
    events = [e for e in via.split(b"\n\n") if e.strip()]
    for e in events:
        data = e.removeprefix(b"data: ")
        assert data == b"[DONE]" or json.loads(data) is not None, f"a malformed event reached the client: {e!r}"
    assert b"[DONE]" not in via and b'"error"' in via, via
    row = gensetd.wait_for_exchange(lambda it: m in text_of(it.get("request_body")) and truthy(it.get("final_attempt", True)),
                                    what="the final row")
    assert not truthy(row["completed"]), row
    gensetd.assert_alive()


def test_slow_first_token_still_served(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    sim.fault("slow_first_token", count=1, delay_ms=400)
    m = marker()
    c = openai.OpenAI(base_url=gensetd.openai_base, api_key=keys.client_openai, max_retries=0, timeout=60)
    text = "".join((ch.choices[0].delta.content or "") for ch in c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: slow {m}"}], stream=True) if ch.choices)
    assert text == f"slow {m}"
    row = gensetd.wait_for_marker(m)
    assert truthy(row["completed"]) and float(row["ttfb_ms"]) >= 350, row
