"""Redaction before storage (`recording.redact`): PII never reaches the store, while the client
still gets the upstream's answer unchanged."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from harness import Gensetd, Secrets, marker, poll, text_of

# Each entry: the text put in the prompt, and the forms that must not be found in storage.
PII: dict[str, tuple[str, list[str]]] = {
    "email": ("jane.doe+billing@example.com", ["jane.doe+billing@example.com", "jane.doe"]),
    "phone": ("+1 415-555-0132", ["415-555-0132", "4155550132"]),
    "card": ("4111 1111 1111 1111", ["4111 1111 1111 1111", "4111111111111111"]),
    "iban": ("DE89 3704 0044 0532 0130 00", ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000"]),
    "bearer": (
        "Bearer abcdEFGH1234ijklMNOP5678qrstUVWX",
        ["abcdEFGH1234ijklMNOP5678qrstUVWX"],
    ),
}


def prompt(m: str) -> str:
    p = PII
    return (
        f"say: ticket {m}: mail {p['email'][0]} or call {p['phone'][0]}; card {p['card'][0]}, "
        f"iban {p['iban'][0]}, header Authorization: {p['bearer'][0]} thanks"
    )


def leaks(text: str) -> list[str]:
    return [f"{kind}:{form}" for kind, (_, forms) in PII.items() for form in forms if form in text]


def row_text(row: dict[str, Any]) -> str:
    return " ".join(text_of(v) if not isinstance(v, (int, float)) else str(v) for v in row.values())


@pytest.mark.parametrize("stream", [False, True], ids=["sync", "stream"])
def test_pii_redacted(start_gensetd, store: str, keys: Secrets, stream: bool, pg_database: str | None) -> None:  # type: ignore[no-untyped-def]
    g: Gensetd = start_gensetd(store=store, redact="pii")
    m = marker()
    c = openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0)
    msgs = [{"role": "user", "content": prompt(m)}]
    if stream:
        answer = "".join(
            (ch.choices[0].delta.content or "") for ch in c.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True) if ch.choices
        )
    else:
        answer = c.chat.completions.create(model="gpt-4o-mini", messages=msgs).choices[0].message.content or ""
    # the client gets the real answer; redaction is for storage only
    assert answer == prompt(m)[len("say: "):]
    item = g.wait_for_marker(m)  # the non-PII parts of the prompt are kept
    assert not leaks(row_text(item)), f"PII in the traffic API: {leaks(row_text(item))}"
    assert "thanks" in text_of(item["request_body"])
    if store == "sqlite":
        row = g.wait_for_sqlite_marker(m)
        assert not leaks(row_text(row)), f"PII in the SQLite row: {leaks(row_text(row))}"
        g.stop()  # checkpoint and close, then look at every byte on disk
        raw = g.store_files_bytes().decode("latin-1")
        assert not leaks(raw), f"PII somewhere in the SQLite files: {leaks(raw)}"
    else:
        import psycopg
        from psycopg.rows import dict_row

        def find() -> dict[str, Any] | None:
            with psycopg.connect(pg_database, row_factory=dict_row) as con:
                for r in con.execute("SELECT * FROM exchanges ORDER BY id DESC LIMIT 200"):
                    if m in text_of(r.get("request_body")):
                        return r
            return None

        row = poll(find, what="PostgreSQL row")
        assert not leaks(row_text(row)), f"PII in the PostgreSQL row: {leaks(row_text(row))}"


def test_redact_none_keeps_bodies(start_gensetd, keys: Secrets) -> None:  # type: ignore[no-untyped-def]
    """Control for the test above: with redact = "none" the same prompt is stored verbatim."""
    g: Gensetd = start_gensetd(redact="none")
    m = marker()
    c = openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0)
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": prompt(m)}])
    item = g.wait_for_marker(m)
    assert PII["email"][0] in text_of(item["request_body"])


def test_hash_only_stores_no_bodies(start_gensetd, keys: Secrets) -> None:  # type: ignore[no-untyped-def]
    g: Gensetd = start_gensetd(redact="hash-only")
    m = marker()
    c = openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0)
    c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt(m)}],
        extra_headers={"x-genset-use-case": "support-triage"},
    )
    item = poll(lambda: g.traffic(use_case="support-triage")["items"], what="a recorded exchange")[0]
    assert int(item["status"]) == 200 and item["model"] == "gpt-4o-mini"
    assert m not in json.dumps(item), item
    g.stop()
    raw = g.store_files_bytes().decode("latin-1")
    assert m not in raw and not leaks(raw)
