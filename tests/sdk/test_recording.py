"""Every exchange is recorded, in SQLite and in PostgreSQL: request, reassembled response,
status, use case, upstream, timings, usage and whether the stream completed."""

from __future__ import annotations

import concurrent.futures
import json
import signal
from typing import Any

import anthropic
import httpx
import openai

from harness import Gensetd, Secrets, marker, poll, text_of, truthy


def store_row(g: Gensetd, m: str, pg_database: str | None) -> dict[str, Any]:
    """The row as the database itself holds it (not through the API)."""
    if g.store == "sqlite":
        return g.wait_for_sqlite_marker(m)
    import psycopg
    from psycopg.rows import dict_row

    def find() -> dict[str, Any] | None:
        with psycopg.connect(pg_database, row_factory=dict_row) as con:
            for row in con.execute("SELECT * FROM exchanges ORDER BY id DESC LIMIT 500"):
                if m in text_of(row.get("request_body")):
                    return row
        return None

    return poll(find, what=f"PostgreSQL row with {m!r}")


def common(row: dict[str, Any], *, api: str, endpoint: str, served_by: str, model: str, stream: bool) -> None:
    assert row["api"] == api, row
    assert row["endpoint"].endswith(endpoint), row
    assert row["served_by"] == served_by, row
    assert row["model"] == model, row
    assert int(row["status"]) == 200, row
    assert truthy(row["stream"]) == stream, row
    assert truthy(row["completed"]), row
    assert row["ttfb_ms"] is not None and row["total_ms"] is not None, row
    assert 0 <= float(row["ttfb_ms"]) <= float(row["total_ms"]) < 30_000, row
    assert row["ts_ms"] and int(row["ts_ms"]) > 1_600_000_000_000, row


def test_openai_sync_recorded(start_gensetd, store: str, keys: Secrets, pg_database: str | None) -> None:  # type: ignore[no-untyped-def]
    g = start_gensetd(store=store)
    m = marker()
    c = openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0)
    done = c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: recorded {m}"}],
        extra_headers={"x-genset-use-case": "support-triage"},
    )
    item = g.wait_for_marker(m)
    common(item, api="openai", endpoint="/chat/completions", served_by="cloud:sim-openai", model="gpt-4o-mini", stream=False)
    assert item["use_case"] == "support-triage"
    assert done.usage is not None
    assert item["prompt_tokens"] == done.usage.prompt_tokens
    assert item["completion_tokens"] == done.usage.completion_tokens
    assert f"recorded {m}" in text_of(item["response_body"])
    row = store_row(g, m, pg_database)
    assert row["id"] == item["id"]
    assert truthy(row["completed"]) and int(row["status"]) == 200
    assert f"recorded {m}" in text_of(row["response_body"])


def test_openai_stream_recorded_reassembled(start_gensetd, store: str, keys: Secrets, pg_database: str | None) -> None:  # type: ignore[no-untyped-def]
    g = start_gensetd(store=store)
    m = marker()
    text = f"alpha beta gamma delta {m} epsilon zeta eta theta"
    c = openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0)
    usage = None
    for chunk in c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: {text}"}], stream=True,
        stream_options={"include_usage": True},
    ):
        usage = chunk.usage or usage
    item = g.wait_for_marker(m)
    common(item, api="openai", endpoint="/chat/completions", served_by="cloud:sim-openai", model="gpt-4o-mini", stream=True)
    # Reassembled: the answer appears whole, not split across SSE chunks.
    assert text in text_of(item["response_body"]), item["response_body"]
    assert usage is not None
    assert item["prompt_tokens"] == usage.prompt_tokens
    assert item["completion_tokens"] == usage.completion_tokens
    row = store_row(g, m, pg_database)
    assert text in text_of(row["response_body"])
    assert truthy(row["stream"]) and truthy(row["completed"])


def test_anthropic_sync_and_stream_recorded(start_gensetd, store: str, keys: Secrets, pg_database: str | None) -> None:  # type: ignore[no-untyped-def]
    g = start_gensetd(store=store)
    c = anthropic.Anthropic(base_url=g.anthropic_base, api_key=keys.client_anthropic, max_retries=0)
    m1 = marker()
    msg = c.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": f"say: {m1}"}])
    item = g.wait_for_marker(m1)
    common(item, api="anthropic", endpoint="/messages", served_by="cloud:sim-anthropic", model="claude-haiku-4-5", stream=False)
    assert item["prompt_tokens"] == msg.usage.input_tokens
    assert item["completion_tokens"] == msg.usage.output_tokens

    m2 = marker()
    text = f"one two three {m2} four five six"
    with c.messages.stream(model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": f"say: {text}"}]) as s:
        final = s.get_final_message()
    item = g.wait_for_marker(m2)
    common(item, api="anthropic", endpoint="/messages", served_by="cloud:sim-anthropic", model="claude-haiku-4-5", stream=True)
    assert text in text_of(item["response_body"])
    assert item["prompt_tokens"] == final.usage.input_tokens
    assert item["completion_tokens"] == final.usage.output_tokens
    store_row(g, m2, pg_database)


def test_traffic_keyset_pagination(start_gensetd, store: str, keys: Secrets) -> None:  # type: ignore[no-untyped-def]
    g = start_gensetd(store=store)
    c = openai.OpenAI(base_url=g.openai_base, api_key=keys.client_openai, max_retries=0)
    ms = [marker() for _ in range(5)]
    for m in ms:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: {m}"}],
                                  extra_headers={"x-genset-use-case": "support-triage"})
    g.wait_for_marker(ms[-1])
    poll(lambda: len(g.traffic(use_case="support-triage", limit=100)["items"]) >= 5, what="5 rows")
    page1 = g.traffic(use_case="support-triage", limit=2)
    assert len(page1["items"]) == 2 and page1["next_before"] is not None, page1
    page2 = g.traffic(use_case="support-triage", limit=2, before=page1["next_before"])
    assert len(page2["items"]) == 2
    ids1 = [it["id"] for it in page1["items"]]
    ids2 = [it["id"] for it in page2["items"]]
    assert not set(ids1) & set(ids2)
    # newest first
    all_ids = [it["id"] for it in g.traffic(use_case="support-triage", limit=100)["items"]]
    assert all_ids[:4] == ids1 + ids2
    assert ms[-1] in text_of(page1["items"][0]["request_body"])


def test_sigterm_drains_recorder(start_gensetd, store: str, keys: Secrets, pg_database: str | None) -> None:  # type: ignore[no-untyped-def]
    """Exchanges answered before SIGTERM are all in the store after gensetd exits."""
    g = start_gensetd(store=store)
    ms = [marker() for _ in range(40)]
    body = lambda m: {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"say: {m}"}]}  # noqa: E731
    h = {"authorization": f"Bearer {keys.client_openai}"}
    with httpx.Client(base_url=g.openai_base, timeout=30) as c, concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda m: c.post("/chat/completions", json=body(m), headers=h).status_code, ms))
    assert codes == [200] * len(ms)
    code = g.stop(signal.SIGTERM)
    assert code == 0, f"gensetd exited {code} on SIGTERM"
    if store == "sqlite":
        texts = [text_of(r["request_body"]) for r in g.sqlite_rows()]
    else:
        import psycopg

        with psycopg.connect(pg_database) as con:
            texts = [text_of(r[0]) for r in con.execute("SELECT request_body FROM exchanges ORDER BY id DESC LIMIT 2000")]
    missing = [m for m in ms if not any(m in t for t in texts)]
    assert not missing, f"{len(missing)} of {len(ms)} exchanges lost at shutdown"


def test_admin_api_requires_token(gensetd: Gensetd) -> None:
    for path in ("/api/v1/status", "/api/v1/traffic", "/api/v1/use-cases"):
        r = httpx.get(gensetd.admin_url + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
        r = httpx.get(gensetd.admin_url + path, headers={"authorization": "Bearer wrong"}, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
    assert gensetd.status()
    r = httpx.get(gensetd.admin_url + "/metrics", timeout=10)
    assert r.status_code == 200


def test_metrics_count_requests_and_drops(gensetd: Gensetd, keys: Secrets) -> None:
    c = openai.OpenAI(base_url=gensetd.openai_base, api_key=keys.client_openai, max_retries=0)
    m = marker()
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: {m}"}])
    gensetd.wait_for_marker(m)
    text = gensetd.metrics()
    assert "genset_recorder_dropped_total" in text
    dropped = [ln for ln in text.splitlines() if ln.startswith("genset_recorder_dropped_total")]
    assert all(float(ln.split()[-1]) == 0 for ln in dropped), dropped
    assert any(ln.startswith("genset_") and "request" in ln for ln in text.splitlines()), "no request metric"


def test_status_reports_upstreams(gensetd: Gensetd) -> None:
    st = gensetd.status()
    assert isinstance(st, dict) and st
    assert "sim-openai" in json.dumps(st) and "sim-anthropic" in json.dumps(st), st
