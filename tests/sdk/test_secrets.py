"""Secrets never land in gensetd's log or in the store: upstream keys, client keys (passthrough
and virtual), the admin token, the console's setup link and the database password."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import anthropic
import openai

from harness import Gensetd, Secrets, Sim, marker

DEBUG_ENV = {"RUST_LOG": "debug", "GENSET_LOG": "debug"}


def exercise(g: Gensetd, sim: Sim, oai_key: str, ant_key: str) -> None:
    """Sync, streaming, failing and rejected requests on both APIs."""
    m = marker()
    o = openai.OpenAI(base_url=g.openai_base, api_key=oai_key, max_retries=0)
    a = anthropic.Anthropic(base_url=g.anthropic_base, api_key=ant_key, max_retries=0)
    o.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: {m}"}])
    list(o.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: s {m}"}], stream=True))
    a.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": f"say: {m}"}])
    with a.messages.stream(model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": f"say: s {m}"}]) as s:
        s.get_final_message()
    o.models.list()
    sim.fault("unauthorized", count=2)
    for call in (lambda: o.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]),
                 lambda: a.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])):
        try:
            call()
        except (openai.APIError, anthropic.APIError):
            pass
    sim.clear_fault()
    g.wait_for_marker(m)


def store_text(g: Gensetd, pg_database: str | None) -> str:
    if g.store == "sqlite":
        return g.store_files_bytes().decode("latin-1")
    import psycopg

    with psycopg.connect(pg_database) as con:
        rows = con.execute("SELECT * FROM exchanges").fetchall()
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        out = [repr(rows)]
        for t in tables:
            out.append(repr(con.execute(f'SELECT * FROM "{t}"').fetchall()))
    return "\n".join(out)


def assert_absent(secrets_: dict[str, str], haystacks: dict[str, str]) -> None:
    found = [f"{sname} in {hname}" for sname, s in secrets_.items() for hname, h in haystacks.items() if s and s in h]
    assert not found, "secrets leaked: " + ", ".join(found)


def test_no_secrets_in_log_or_store(start_gensetd, sim: Sim, keys: Secrets, store: str, pg_database: str | None) -> None:  # type: ignore[no-untyped-def]
    # 1. appliance-held upstream keys, used through virtual keys
    g1: Gensetd = start_gensetd(store=store, upstream_keys=True, env=DEBUG_ENV)
    vks: list[str] = []
    for uc in ("support-triage", "billing"):
        r = g1.admin.post("/api/v1/keys", json={"use_case": uc, "name": f"k-{uc}"})
        assert r.status_code in (200, 201), r.text
        vks.append(r.json()["key"])
    exercise(g1, sim, vks[0], vks[1])
    traffic1 = str(g1.traffic(limit=200))
    # the console's first-admin link (what `gensetctl admin bootstrap` prints) is a credential too
    r = g1.admin.post("/api/v1/console/bootstrap")
    assert r.status_code == 201, r.text
    setup_token = r.json()["setup_path"].split("token=", 1)[1]
    assert len(setup_token) >= 40
    # 2. passthrough of the clients' own keys
    g2: Gensetd = start_gensetd(store=store, env=DEBUG_ENV)
    exercise(g2, sim, keys.client_openai, keys.client_anthropic)
    traffic2 = str(g2.traffic(limit=200))

    secrets_: dict[str, str] = {
        "upstream openai key": keys.upstream_openai,
        "upstream anthropic key": keys.upstream_anthropic,
        "client openai key": keys.client_openai,
        "client anthropic key": keys.client_anthropic,
        "virtual key 1": vks[0],
        "virtual key 2": vks[1],
        "admin token 1": g1.token,
        "admin token 2": g2.token,
        "console setup token": setup_token,
        # no setup link at all: none is issued at start, and an issued one is not logged
        "a console setup link": "/setup?token=",
        # passthrough keys are kept only as *salted* hashes
        "unsalted sha256 of client key": hashlib.sha256(keys.client_openai.encode()).hexdigest(),
    }
    if store == "postgres" and pg_database:
        pw = urlsplit(pg_database).password
        if pw:
            secrets_["database password"] = pw
    g1.stop()
    g2.stop()
    assert_absent(secrets_, {
        "gensetd#1 stderr": g1.proc.stderr_text(),
        "gensetd#2 stderr": g2.proc.stderr_text(),
        "gensetd#1 stdout": "\n".join(g1.proc.stdout_lines),
        "gensetd#2 stdout": "\n".join(g2.proc.stdout_lines),
        "store#1": store_text(g1, pg_database),
        "store#2": store_text(g2, pg_database),
        "traffic API #1": traffic1,
        "traffic API #2": traffic2,
    })
    # sanity: the haystacks really hold the traffic (so the test is not vacuous)
    assert "say:" in store_text(g2, pg_database) or "say:" in traffic2


def test_secret_config_values_not_echoed_by_check_config(tmp_path, sim: Sim) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from harness import binary, render_toml

    key_file = tmp_path / "key"
    key_file.write_text("sk-filekey-0123456789abcdef0123456789\n")
    cfg: dict[str, Any] = {
        "proxy": {"listen": "127.0.0.1:0", "max_body": "1MiB"},
        "admin": {"listen": "127.0.0.1:0", "token_file": str(tmp_path / "tok")},
        "store": {"url": f"sqlite://{tmp_path / 'g.db'}"},
        "recording": {"redact": "none", "retention": "30d"},
        "upstreams": [{"name": "u", "api": "openai", "base_url": sim.openai_base, "api_key_file": str(key_file)}],
    }
    p = tmp_path / "g.toml"
    p.write_text(render_toml(cfg))
    r = subprocess.run([str(binary("gensetd")), "check-config", "--config", str(p)], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"sk-filekey" not in r.stdout + r.stderr
