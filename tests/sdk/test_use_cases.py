"""Use-case classification: by header, model, system prompt and path; unmatched -> unclassified."""

from __future__ import annotations

import anthropic
import openai

from harness import Gensetd, Secrets, marker


def oai(g: Gensetd, keys: Secrets, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0, **kw)  # type: ignore[arg-type]


def check(g: Gensetd, keys: Secrets, expected: str, *, model: str = "gpt-4o-mini", system: str | None = None,
          headers: dict[str, str] | None = None) -> None:
    m = marker()
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": f"say: {m}"}]
    raw = oai(g, keys).chat.completions.with_raw_response.create(model=model, messages=msgs, extra_headers=headers or {})
    assert raw.headers.get("x-genset-use-case") == expected, (expected, dict(raw.headers))
    row = g.wait_for_marker(m)
    assert row["use_case"] == expected, row


def test_by_header(gensetd: Gensetd, keys: Secrets) -> None:
    check(gensetd, keys, "support-triage", headers={"x-genset-use-case": "support-triage"})


def test_unknown_header_value_is_unclassified(gensetd: Gensetd, keys: Secrets) -> None:
    check(gensetd, keys, "unclassified", headers={"x-genset-use-case": "no-such-use-case"})


def test_by_model(gensetd: Gensetd, keys: Secrets) -> None:
    check(gensetd, keys, "by-model", model="genset-classify-model")


def test_by_system_prompt_openai(gensetd: Gensetd, keys: Secrets) -> None:
    check(gensetd, keys, "billing", system="You are a Billing Assistant for ACME. Be precise.")
    check(gensetd, keys, "unclassified", system="You are a poet.")


def test_by_system_prompt_anthropic(gensetd: Gensetd, keys: Secrets) -> None:
    m = marker()
    c = anthropic.Anthropic(base_url=gensetd.anthropic_base, api_key=keys.client_anthropic, max_retries=0)
    for system in ("you are a billing assistant.", [{"type": "text", "text": "You are a billing assistant."}]):
        raw = c.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=32, system=system,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": f"say: {m}"}],
        )
        assert raw.headers.get("x-genset-use-case") == "billing", system


def test_by_path(gensetd: Gensetd, keys: Secrets) -> None:
    raw = oai(gensetd, keys).embeddings.with_raw_response.create(model="text-embedding-3-small", input="x")
    assert raw.headers.get("x-genset-use-case") == "embeddings"


def test_first_match_wins_and_unclassified(gensetd: Gensetd, keys: Secrets) -> None:
    # header beats the model rule listed after it
    check(gensetd, keys, "support-triage", model="genset-classify-model", headers={"x-genset-use-case": "support-triage"})
    check(gensetd, keys, "unclassified")


def test_use_cases_api_lists_configured(gensetd: Gensetd, keys: Secrets) -> None:
    check(gensetd, keys, "support-triage", headers={"x-genset-use-case": "support-triage"})
    r = gensetd.admin.get("/api/v1/use-cases")
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"] if isinstance(body, dict) and "items" in body else body
    names = {(u["name"] if isinstance(u, dict) else u) for u in items}
    assert {"support-triage", "by-model", "billing", "embeddings"} <= names, body


def test_traffic_filter_by_use_case(gensetd: Gensetd, keys: Secrets) -> None:
    check(gensetd, keys, "support-triage", headers={"x-genset-use-case": "support-triage"})
    check(gensetd, keys, "unclassified")
    items = gensetd.traffic(use_case="support-triage")["items"]
    assert items and all(it["use_case"] == "support-triage" for it in items)
