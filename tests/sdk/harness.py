"""Process harness for genset's SDK integration tests.

Starts the real `genset-sim` and `gensetd` binaries on port 0, parses their ready lines,
and offers small helpers (admin API, polling the recorded traffic, reading the SQLite
store read-only). Nothing here sleeps a fixed time to wait for a result: every wait is a
poll with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

REPO = Path(__file__).resolve().parents[2]

SIM_READY = re.compile(r"genset-sim listening on (http://\S+)")
GENSETD_READY = re.compile(r"gensetd ready proxy=(http://\S+) admin=(http://\S+)")

START_TIMEOUT = float(os.environ.get("GENSET_TEST_START_TIMEOUT", "30"))
POLL_TIMEOUT = float(os.environ.get("GENSET_TEST_POLL_TIMEOUT", "15"))


def bin_dir() -> Path:
    """Where the workspace's binaries are: $GENSET_BIN_DIR, else $CARGO_TARGET_DIR/debug, else target/debug."""
    if os.environ.get("GENSET_BIN_DIR"):
        return Path(os.environ["GENSET_BIN_DIR"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "debug"
    return REPO / "target" / "debug"


def binary(name: str) -> Path:
    return bin_dir() / name


def poll(fn: Callable[[], Any], timeout: float = POLL_TIMEOUT, interval: float = 0.02, what: str = "condition") -> Any:
    """Call `fn` until it returns something truthy; return that. Raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - we re-raise the last one on timeout
            last_exc = e
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                raise TimeoutError(f"{msg} (last error: {last_exc!r})") from last_exc
            raise TimeoutError(msg)
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


class Proc:
    """A child process whose stdout is watched for a ready line and whose stderr goes to a file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.stdout_lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self.stdout_lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.stdout_lines[seen:]:
                    m = pattern.search(line)
                    if m:
                        return m
                seen = len(self.stdout_lines)
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.argv[0]} exited with {self.proc.returncode} before printing its ready line\n"
                        f"stdout: {self.stdout_lines!r}\nstderr:\n{self.stderr_text()[-4000:]}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.argv[0]} printed no ready line within {timeout}s\n"
                        f"stdout: {self.stdout_lines!r}\nstderr:\n{self.stderr_text()[-4000:]}"
                    )
                self._cond.wait(min(left, 0.2))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Signal the process, wait for it, kill it if it does not go. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------


class Sim:
    def __init__(self, workdir: Path):
        # A separate control listener stays reachable while the `refuse` fault closes the API port.
        self.proc = Proc(
            [str(binary("genset-sim")), "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"],
            workdir / "genset-sim.stderr.log",
        )
        self.url = self.proc.wait_for_line(SIM_READY).group(1).rstrip("/")
        self.control_url = self._find_control_url()
        self.http = httpx.Client(base_url=self.control_url, timeout=10)

    def _find_control_url(self) -> str:
        """GET /_sim/health on the API port names the control listener's URL."""
        r = httpx.get(self.url + "/_sim/health", timeout=10)
        r.raise_for_status()

        def urls(v: Any) -> list[str]:
            if isinstance(v, str):
                return [v] if v.startswith("http://") else []
            if isinstance(v, dict):
                return [u for x in v.values() for u in urls(x)]
            if isinstance(v, list):
                return [u for x in v for u in urls(x)]
            return []

        others = [u.rstrip("/") for u in urls(r.json()) if not u.rstrip("/").startswith(self.url)]
        if not others:
            return self.url
        u = others[0]
        return u[: -len("/_sim")] if u.endswith("/_sim") else u

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    def reset(self) -> None:
        r = self.http.post("/_sim/reset")
        r.raise_for_status()

    def fault(self, mode: str, count: int | None = None, **extra: Any) -> None:
        body: dict[str, Any] = {"mode": mode}
        if count is not None:
            body["count"] = count
        body.update(extra)
        r = self.http.post("/_sim/fault", json=body)
        assert r.status_code < 300, f"sim refused fault {body}: {r.status_code} {r.text}"

    def config(self, **settings: Any) -> dict[str, Any]:
        """POST /_sim/config (token_delay_ms, stable_ids); returns the settings now in force."""
        r = self.http.post("/_sim/config", json=settings)
        assert r.status_code < 300, f"sim refused config {settings}: {r.status_code} {r.text}"
        return r.json()

    def clear_fault(self) -> None:
        self.http.delete("/_sim/fault").raise_for_status()

    def stats(self) -> dict[str, Any]:
        r = self.http.get("/_sim/stats")
        r.raise_for_status()
        return r.json()

    def last_request(self) -> dict[str, Any] | None:
        """The last API request the simulator saw, genset's health probes left out."""
        req = self.stats().get("last_request")
        if req and (header_of(req, "user-agent") or "").startswith("genset-probe"):
            return None
        return req

    def stop(self) -> None:
        self.http.close()
        self.proc.stop()


def header_of(req: dict[str, Any], name: str) -> str | None:
    """A header from the sim's `last_request`, whatever shape its headers take (dict or list of pairs)."""
    h = req.get("headers") or {}
    name = name.lower()
    if isinstance(h, dict):
        for k, v in h.items():
            if k.lower() == name:
                return v if isinstance(v, str) else (v[0] if v else None)
        return None
    for pair in h:
        if isinstance(pair, dict):
            k, v = pair.get("name"), pair.get("value")
        else:
            k, v = pair[0], pair[1]
        if k and k.lower() == name:
            return v
    return None


# --------------------------------------------------------------------------------------
# gensetd
# --------------------------------------------------------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {v!r} as TOML")


def render_toml(cfg: dict[str, Any]) -> str:
    """Render a two-level config dict: tables of scalars and arrays of tables of scalars."""
    out: list[str] = []
    for key, val in cfg.items():
        if isinstance(val, dict):
            out.append(f"[{key}]")
            out.extend(f"{k} = {toml_value(x)}" for k, x in val.items())
            out.append("")
        elif isinstance(val, list) and val and all(isinstance(x, dict) for x in val):
            for item in val:
                out.append(f"[[{key}]]")
                out.extend(f"{k} = {toml_value(x)}" for k, x in item.items())
                out.append("")
        else:
            out.insert(0, f"{key} = {toml_value(val)}")
    return "\n".join(out) + "\n"


@dataclass
class Secrets:
    """Keys the tests use; the secrets test greps the log and the store for every one of them."""

    upstream_openai: str = field(default_factory=lambda: "sk-upstream-oai-" + secrets.token_hex(16))
    upstream_anthropic: str = field(default_factory=lambda: "sk-ant-upstream-" + secrets.token_hex(16))
    client_openai: str = field(default_factory=lambda: "sk-client-oai-" + secrets.token_hex(16))
    client_anthropic: str = field(default_factory=lambda: "sk-ant-client-" + secrets.token_hex(16))

    def all(self) -> list[str]:
        return [self.upstream_openai, self.upstream_anthropic, self.client_openai, self.client_anthropic]


class Gensetd:
    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str], store: str, pg_url: str | None = None):
        self.workdir = workdir
        self.config = config
        self.store = store  # "sqlite" | "postgres"
        self.pg_url = pg_url
        self.config_path = workdir / "genset.toml"
        self.config_path.write_text(render_toml(config))
        self.token_path = Path(config["admin"]["token_file"])
        self.db_path = workdir / "genset.db" if store == "sqlite" else None
        self.proc = Proc(
            [str(binary("gensetd")), "--config", str(self.config_path)],
            workdir / "gensetd.stderr.log",
            env=env,
            cwd=workdir,
        )
        m = self.proc.wait_for_line(GENSETD_READY)
        self.proxy_url = m.group(1).rstrip("/")
        self.admin_url = m.group(2).rstrip("/")
        self.token = poll(lambda: self.token_path.read_text().strip(), timeout=5, what="admin token file")
        self.admin = httpx.Client(
            base_url=self.admin_url, timeout=10, headers={"authorization": f"Bearer {self.token}"}
        )
        self.proxy = httpx.Client(base_url=self.proxy_url, timeout=30)

    # -- URLs for the SDKs
    @property
    def openai_base(self) -> str:
        return self.proxy_url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.proxy_url

    # -- admin API
    def status(self) -> dict[str, Any]:
        r = self.admin.get("/api/v1/status")
        assert r.status_code == 200, f"/api/v1/status answered {r.status_code}: {r.text}"
        return r.json()

    def traffic(self, **params: Any) -> dict[str, Any]:
        r = self.admin.get("/api/v1/traffic", params={k: v for k, v in params.items() if v is not None})
        assert r.status_code == 200, f"/api/v1/traffic answered {r.status_code}: {r.text}"
        return r.json()

    def wait_for_exchange(self, pred: Callable[[dict[str, Any]], bool], what: str = "recorded exchange", **params: Any) -> dict[str, Any]:
        """Poll the traffic API until an item matches `pred`."""

        params.setdefault("limit", 100)

        def find() -> dict[str, Any] | None:
            for item in self.traffic(**params)["items"]:
                if pred(item):
                    return item
            return None

        return poll(find, what=what)

    def wait_for_marker(self, marker: str, **params: Any) -> dict[str, Any]:
        return self.wait_for_exchange(lambda it: marker in text_of(it.get("request_body")), what=f"exchange with {marker!r}", **params)

    # -- the SQLite store, read-only
    def sqlite_rows(self, where: str = "1=1", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        assert self.db_path is not None
        if not self.db_path.exists():
            return []
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(f"SELECT * FROM exchanges WHERE {where} ORDER BY id", args)]
        finally:
            con.close()

    def wait_for_sqlite_marker(self, marker: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for row in self.sqlite_rows():
                if marker in text_of(row.get("request_body")):
                    return row
            return None

        return poll(find, what=f"SQLite row with {marker!r}")

    def store_files_bytes(self) -> bytes:
        """Every byte the SQLite store has on disk (db, WAL, shared memory)."""
        out = b""
        if self.db_path is None:
            return out
        for p in self.db_path.parent.glob(self.db_path.name + "*"):
            out += p.read_bytes()
        return out

    def metrics(self) -> str:
        r = httpx.get(self.admin_url + "/metrics", timeout=10)
        assert r.status_code == 200, r.text
        return r.text

    def assert_alive(self) -> None:
        assert self.proc.alive(), f"gensetd died (exit {self.proc.proc.returncode})\n{self.proc.stderr_text()[-4000:]}"
        self.status()

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        self.admin.close()
        self.proxy.close()
        return self.proc.stop(sig)


def marker() -> str:
    """A unique token to find one exchange among the recorded ones."""
    return "m" + secrets.token_hex(6)


VOLATILE_KEYS = {"id", "created", "created_at", "request_id", "system_fingerprint"}


def strip_volatile(v: Any) -> Any:
    """A decoded JSON value without the per-response fields (ids, timestamps) a provider makes fresh."""
    if isinstance(v, dict):
        return {k: strip_volatile(x) for k, x in v.items() if k not in VOLATILE_KEYS}
    if isinstance(v, list):
        return [strip_volatile(x) for x in v]
    return v


def text_of(v: Any) -> str:
    """A stored body as text, whether the store gave a string, bytes or decoded JSON."""
    if v is None:
        return ""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False)


def truthy(v: Any) -> bool:
    """Booleans as SQLite (0/1), PostgreSQL or JSON give them."""
    if isinstance(v, str):
        return v.lower() in ("1", "true", "t", "yes")
    return bool(v)


def openai_error(resp: httpx.Response) -> dict[str, Any]:
    """Assert an OpenAI-format error body and return its `error` object."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not an OpenAI error body: {resp.text}"
    err = body["error"]
    for k in ("message", "type", "param", "code"):
        assert k in err, f"OpenAI error lacks {k!r}: {resp.text}"
    assert isinstance(err["message"], str) and err["message"], resp.text
    assert isinstance(err["type"], str) and err["type"], resp.text
    return err


def anthropic_error(resp: httpx.Response) -> dict[str, Any]:
    """Assert an Anthropic-format error body and return its `error` object."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and body.get("type") == "error", f"not an Anthropic error body: {resp.text}"
    err = body.get("error")
    assert isinstance(err, dict), resp.text
    assert isinstance(err.get("type"), str) and err["type"], resp.text
    assert isinstance(err.get("message"), str) and err["message"], resp.text
    return err
