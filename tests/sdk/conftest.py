"""Fixtures: the real genset-sim and gensetd binaries on random loopback ports.

- `sim`: one simulator for the session, reset before every test.
- `start_gensetd(...)`: a factory that writes a config into the test's temp dir, starts gensetd,
  waits for its ready line and stops it (SIGTERM) at teardown; a failed test gets gensetd's
  stderr printed in its report.
- `store`: parametrizes a test over "sqlite" and "postgres"; the PostgreSQL variant runs when
  GENSET_TEST_PG_URL points at a server (scripts/test.sh starts one) and uses a throwaway
  database created for this session and dropped at its end.
"""

from __future__ import annotations

import copy
import os
import secrets as pysecrets
import sys
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Gensetd, Secrets, Sim, binary  # noqa: E402

PG_URL = os.environ.get("GENSET_TEST_PG_URL")

USE_CASES: list[dict[str, Any]] = [
    {"name": "support-triage", "match": {"header": "x-genset-use-case", "value": "support-triage"}},
    {"name": "by-model", "match": {"model": "genset-classify-model"}},
    {"name": "billing", "match": {"system_prompt": "(?i)you are a billing assistant"}},
    {"name": "embeddings", "match": {"path": "/v1/embeddings"}},
]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_configure(config: pytest.Config) -> None:
    missing = [n for n in ("genset-sim", "gensetd") if not binary(n).exists()]
    if missing:
        print(f"\nwarning: missing binaries {missing} in {binary('x').parent}; build with `cargo build --workspace`", file=sys.stderr)


def _failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(getattr(node, f"rep_{w}", None) is not None and getattr(node, f"rep_{w}").failed for w in ("setup", "call"))


# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    if not binary("genset-sim").exists():
        pytest.fail(f"genset-sim not built at {binary('genset-sim')}")
    s = Sim(tmp_path_factory.mktemp("sim"))
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _sim_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    if "sim" in request.fixturenames:
        s: Sim = request.getfixturevalue("sim")
        if not s.proc.alive():
            pytest.fail(f"genset-sim died:\n{s.proc.stderr_text()[-4000:]}")
        s.reset()
    yield


@pytest.fixture
def keys() -> Secrets:
    return Secrets()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A throwaway database on the server at GENSET_TEST_PG_URL, for this session only."""
    if not PG_URL:
        yield None
        return
    import psycopg

    name = "genset_test_" + pysecrets.token_hex(6)
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(PG_URL)
    yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    with psycopg.connect(PG_URL, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and not PG_URL:
        pytest.skip("GENSET_TEST_PG_URL not set (scripts/test.sh starts a PostgreSQL server and sets it)")
    return request.param


StartGensetd = Callable[..., Gensetd]


@pytest.fixture
def start_gensetd(
    request: pytest.FixtureRequest, tmp_path: Path, sim: Sim, keys: Secrets, pg_database: str | None
) -> Iterator[StartGensetd]:
    started: list[Gensetd] = []

    def start(
        *,
        store: str = "sqlite",
        redact: str = "none",
        upstream_keys: bool = False,
        use_cases: list[dict[str, Any]] | None = None,
        upstreams: list[dict[str, Any]] | None = None,
        max_body: str = "1MiB",
        env: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Gensetd:
        workdir = tmp_path / f"gensetd{len(started)}"
        workdir.mkdir()
        if store == "postgres":
            assert pg_database, "postgres store requested without GENSET_TEST_PG_URL"
            store_url = pg_database
        else:
            store_url = f"sqlite://{workdir / 'genset.db'}"  # absolute path: sqlite:///tmp/...
        if upstreams is None:
            upstreams = [
                {"name": "sim-openai", "api": "openai", "base_url": sim.openai_base},
                {"name": "sim-anthropic", "api": "anthropic", "base_url": sim.anthropic_base},
            ]
            if upstream_keys:
                upstreams[0]["api_key_env"] = "GENSET_TEST_OPENAI_KEY"
                upstreams[1]["api_key_env"] = "GENSET_TEST_ANTHROPIC_KEY"
        cfg: dict[str, Any] = {
            "proxy": {"listen": "127.0.0.1:0", "max_body": max_body},
            "admin": {"listen": "127.0.0.1:0", "token_file": str(workdir / "admin.token")},
            "store": {"url": store_url},
            "recording": {"redact": redact, "retention": "30d"},
            "upstreams": upstreams,
            "use_cases": copy.deepcopy(USE_CASES if use_cases is None else use_cases),
            # One health probe at start only: tests inspect the simulator's last request.
            "failover": {"probe_interval": "1h"},
        }
        for k, v in (extra or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        if not cfg["use_cases"]:
            del cfg["use_cases"]
        penv = {k: v for k, v in os.environ.items() if not k.startswith("GENSET_TEST_")}
        penv.setdefault("RUST_LOG", "info")
        penv["GENSET_TEST_OPENAI_KEY"] = keys.upstream_openai
        penv["GENSET_TEST_ANTHROPIC_KEY"] = keys.upstream_anthropic
        penv.update(env or {})
        g = Gensetd(workdir, cfg, penv, store)
        started.append(g)
        return g

    yield start

    failed = _failed(request)
    for g in started:
        code = g.stop()
        if failed:
            print(f"\n----- gensetd stderr ({g.proc.log_path}, exit {code}) -----")
            print(g.proc.stderr_text()[-20000:])
            print(f"----- config {g.config_path} -----")
            print(g.config_path.read_text())
    if failed:
        print(f"----- genset-sim stderr ({sim.proc.log_path}) -----")
        print(sim.proc.stderr_text()[-4000:])


@pytest.fixture
def gensetd(start_gensetd: StartGensetd) -> Gensetd:
    """gensetd with the default config: SQLite, passthrough keys, no redaction."""
    return start_gensetd()

