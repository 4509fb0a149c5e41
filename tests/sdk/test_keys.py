"""Client auth: virtual keys (genset-issued `gk-` keys mapped to the appliance's upstream
credential) and passthrough of the client's own key."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from harness import Gensetd, Secrets, Sim, anthropic_error, header_of, marker, openai_error


def create_key(g: Gensetd, use_case: str, name: str = "test") -> dict[str, Any]:
    r = g.admin.post("/api/v1/keys", json={"use_case": use_case, "name": name})
    assert r.status_code in (200, 201), f"{r.status_code} {r.text}"
    body = r.json()
    assert body["key"].startswith("gk-") and body["id"], body
    return body


def test_virtual_key_openai(start_gensetd, sim: Sim, keys: Secrets) -> None:  # type: ignore[no-untyped-def]
    g: Gensetd = start_gensetd(upstream_keys=True)
    vk = create_key(g, "support-triage")["key"]
    m = marker()
    c = openai.OpenAI(base_url=g.openai_base, api_key=vk, max_retries=0)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: {m}"}])
    assert raw.parse().choices[0].message.content == m
    assert raw.headers.get("x-genset-use-case") == "support-triage"
    last = sim.last_request()
    assert last is not None
    assert header_of(last, "authorization") == f"Bearer {keys.upstream_openai}"
    assert vk not in str(last["headers"])
    row = g.wait_for_marker(m)
    assert row["use_case"] == "support-triage"
    # streaming with the same key
    text = "".join((ch.choices[0].delta.content or "") for ch in c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: streamed {m}"}], stream=True) if ch.choices)
    assert text == f"streamed {m}"


def test_virtual_key_anthropic(start_gensetd, sim: Sim, keys: Secrets) -> None:  # type: ignore[no-untyped-def]
    g: Gensetd = start_gensetd(upstream_keys=True)
    vk = create_key(g, "billing")["key"]
    m = marker()
    c = anthropic.Anthropic(base_url=g.anthropic_base, api_key=vk, max_retries=0)
    raw = c.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": f"say: {m}"}])
    assert raw.parse().content[0].text == m
    assert raw.headers.get("x-genset-use-case") == "billing"
    last = sim.last_request()
    assert last is not None
    assert header_of(last, "x-api-key") == keys.upstream_anthropic
    assert vk not in str(last["headers"])


@pytest.mark.parametrize("upstream_keys", [True, False], ids=["appliance-key", "passthrough"])
def test_unknown_virtual_key_rejected(start_gensetd, sim: Sim, upstream_keys: bool) -> None:  # type: ignore[no-untyped-def]
    g: Gensetd = start_gensetd(upstream_keys=upstream_keys)
    bogus = "gk-" + "0" * 40
    r = g.proxy.post("/v1/chat/completions", headers={"authorization": f"Bearer {bogus}"},
                     json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say: x"}]})
    assert r.status_code == 401, r.text
    err = openai_error(r)
    assert bogus not in r.text
    assert err["type"] in ("authentication_error", "invalid_request_error"), err
    r = g.proxy.post("/v1/messages", headers={"x-api-key": bogus, "anthropic-version": "2023-06-01"},
                     json={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "say: x"}]})
    assert r.status_code == 401, r.text
    assert anthropic_error(r)["type"] == "authentication_error"
    assert sim.last_request() is None, "a request with a bad key was forwarded upstream"
    # the SDKs surface it as their AuthenticationError
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=g.openai_base, api_key=bogus, max_retries=0).models.list()
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=g.anthropic_base, api_key=bogus, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    g.assert_alive()


def test_passthrough_forwards_client_key(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    openai.OpenAI(base_url=gensetd.openai_base, api_key=keys.client_openai, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "say: x"}])
    assert header_of(sim.last_request() or {}, "authorization") == f"Bearer {keys.client_openai}"
    anthropic.Anthropic(base_url=gensetd.anthropic_base, api_key=keys.client_anthropic, max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "say: x"}])
    last = sim.last_request() or {}
    # anthropic SDK >= 2.x sends the key as `Authorization: Bearer`, older ones as `x-api-key`:
    # whichever the client used reaches the upstream.
    assert keys.client_anthropic in (header_of(last, "x-api-key"), (header_of(last, "authorization") or "")[len("Bearer "):]), last


def test_cloud_rejection_passes_through(gensetd: Gensetd, sim: Sim, keys: Secrets) -> None:
    """The cloud says 401 to a passthrough key: the client gets the cloud's 401."""
    sim.fault("unauthorized", count=1)
    r = gensetd.proxy.post("/v1/chat/completions", headers={"authorization": f"Bearer {keys.client_openai}"},
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say: x"}]})
    assert r.status_code == 401
    openai_error(r)
    sim.fault("forbidden", count=1)
    r = gensetd.proxy.post("/v1/messages", headers={"x-api-key": keys.client_anthropic, "anthropic-version": "2023-06-01"},
                           json={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 403
    anthropic_error(r)


def test_keys_api_requires_admin_token(gensetd: Gensetd) -> None:
    r = httpx.post(gensetd.admin_url + "/api/v1/keys", json={"use_case": "support-triage", "name": "x"}, timeout=10)
    assert r.status_code == 401


def test_appliance_upstream_rejects_raw_keys(start_gensetd, sim: Sim, keys: Secrets) -> None:  # type: ignore[no-untyped-def]
    """An upstream that uses the appliance's credential takes only virtual keys: a client's own key
    (or none) gets a 401 in the API's format and nothing reaches the upstream."""
    g: Gensetd = start_gensetd(upstream_keys=True)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say: x"}]}
    for h in ({"authorization": f"Bearer {keys.client_openai}"}, {}):
        r = g.proxy.post("/v1/chat/completions", json=body, headers=h)
        assert r.status_code == 401, r.text
        openai_error(r)
    r = g.proxy.post("/v1/messages", json={**body, "max_tokens": 8},
                     headers={"x-api-key": keys.client_anthropic, "anthropic-version": "2023-06-01"})
    assert r.status_code == 401, r.text
    anthropic_error(r)
    assert sim.last_request() is None
