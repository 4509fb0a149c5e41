"""An upstream stream that breaks: the client sees an error, never a clean end, and the
exchange is recorded with completed = false."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from harness import Gensetd, Secrets, Sim, marker, truthy

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
    """At the HTTP level: the chunked body through genset must not end cleanly when the upstream's did not."""
    sim.fault("cut_mid_stream", count=1)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "say: a b c d e f g h i j"}]}
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("POST", gensetd.openai_base + "/chat/completions", json=body,
                          headers={"authorization": f"Bearer {keys.client_openai}"}, timeout=15) as r:
            assert r.status_code == 200
            for _ in r.iter_raw():
                pass


def test_missing_done_recorded_incomplete(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    sim.fault("missing_done", count=1)
    m = marker()
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": f"say: a b c {m}"}]}
    raw = b""
    try:
        with httpx.stream("POST", gensetd.openai_base + "/chat/completions", json=body,
                          headers={"authorization": f"Bearer {keys.client_openai}"}, timeout=15) as r:
            for chunk in r.iter_raw():
                raw += chunk
    except httpx.HTTPError:
        pass  # ending the client's stream with an error is acceptable too
    assert b"[DONE]" not in raw, "genset invented a [DONE] the upstream never sent"
    row = gensetd.wait_for_marker(m)
    assert not truthy(row["completed"]), row
    gensetd.assert_alive()


def test_malformed_chunk_forwarded_and_recorded(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    m = marker()
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": f"say: a b c {m}"}]}
    with httpx.Client(timeout=15) as c:
        sim.fault("malformed_chunk", count=1)
        direct = c.post(sim.openai_base + "/chat/completions", json=body, headers={"authorization": "Bearer x"}).content
        sim.fault("malformed_chunk", count=1)
        try:
            via = c.post(gensetd.openai_base + "/chat/completions", json=body, headers={"authorization": "Bearer x"}).content
        except httpx.HTTPError:
            via = None
    if via is not None:
        # pass-through: the malformed bytes are the upstream's, forwarded as they came
        assert via.count(b"data:") == direct.count(b"data:")
    gensetd.wait_for_marker(m)
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
