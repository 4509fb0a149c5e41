"""`gensetd check-config` and `gensetctl`, run as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import openai
import pytest

from harness import Gensetd, Secrets, Sim, binary, marker, render_toml


def base_config(tmp: Path, sim_url: str) -> dict[str, Any]:
    return {
        "proxy": {"listen": "127.0.0.1:0", "max_body": "8MiB"},
        "admin": {"listen": "127.0.0.1:0", "token_file": str(tmp / "admin.token")},
        "store": {"url": f"sqlite://{tmp / 'genset.db'}"},
        "recording": {"redact": "pii", "retention": "30d"},
        "upstreams": [
            {"name": "a", "api": "openai", "base_url": sim_url + "/v1"},
            {"name": "b", "api": "anthropic", "base_url": sim_url},
        ],
        "use_cases": [{"name": "support-triage", "match": {"header": "x-genset-use-case", "value": "support-triage"}}],
    }


def check_config(tmp: Path, cfg: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
    p = tmp / "check.toml"
    p.write_text(cfg if isinstance(cfg, str) else render_toml(cfg))
    return subprocess.run([str(binary("gensetd")), "check-config", "--config", str(p)], capture_output=True, text=True, timeout=30)


def test_check_config_accepts_valid(tmp_path: Path, sim: Sim) -> None:
    r = check_config(tmp_path, base_config(tmp_path, sim.url))
    assert r.returncode == 0, r.stdout + r.stderr


def mutate(cfg: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    cur: Any = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if k.isdigit() else cur[k]
    cur[keys[-1]] = value
    return cfg


BAD = [
    # (dotted path in our dict, bad value, strings the error must name)
    ("upstreams.1.base_url", "not a url", ["upstreams[1]", "base_url"]),
    ("upstreams.0.api", "gemini", ["upstreams[0]", "api"]),
    ("recording.redact", "some", ["recording", "redact"]),
    ("recording.retention", "forever-ish", ["recording", "retention"]),
    ("proxy.max_body", "lots", ["proxy", "max_body"]),
    ("proxy.listen", "not-an-address", ["proxy", "listen"]),
    ("proxy.bogus_key", 1, ["bogus_key"]),
    ("store.url", "mysql://x", ["store", "url"]),
]


@pytest.mark.parametrize("path,value,names", BAD, ids=[b[0] for b in BAD])
def test_check_config_names_the_key(tmp_path: Path, sim: Sim, path: str, value: Any, names: list[str]) -> None:
    r = check_config(tmp_path, mutate(base_config(tmp_path, sim.url), path, value))
    out = r.stdout + r.stderr
    assert r.returncode != 0, f"accepted {path} = {value!r}"
    for n in names:
        assert n in out, f"error for {path} does not name {n!r}: {out}"


def test_check_config_rejects_bad_toml_and_missing_file(tmp_path: Path) -> None:
    r = check_config(tmp_path, "[proxy\nlisten = ")
    assert r.returncode != 0 and (r.stderr or r.stdout)
    r = subprocess.run([str(binary("gensetd")), "check-config", "--config", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "nope.toml" in r.stdout + r.stderr


def test_gensetd_refuses_to_start_on_bad_config(tmp_path: Path, sim: Sim) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(render_toml(mutate(base_config(tmp_path, sim.url), "recording.redact", "some")))
    r = subprocess.run([str(binary("gensetd")), "--config", str(p)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "gensetd ready" not in r.stdout
    assert "redact" in r.stderr


def ctl(g: Gensetd, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GENSET_ADMIN_URL=g.admin_url, GENSET_ADMIN_TOKEN=g.token)
    return subprocess.run([str(binary("gensetctl")), *args], capture_output=True, text=True, timeout=30, env=env)


def ctl_json(g: Gensetd, *args: str) -> Any:
    r = ctl(g, *args, "--json")
    if r.returncode != 0:  # a global flag placed first
        r = ctl(g, "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_gensetctl_status_and_traffic(gensetd: Gensetd, keys: Secrets) -> None:
    m = marker()
    openai.OpenAI(base_url=gensetd.openai_base, api_key=keys.client_openai, max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"say: {m}"}])
    gensetd.wait_for_marker(m)
    r = ctl(gensetd, "status")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    assert isinstance(ctl_json(gensetd, "status"), dict)
    r = ctl(gensetd, "traffic")
    assert r.returncode == 0 and "gpt-4o-mini" in r.stdout, r.stdout + r.stderr
    assert m in json.dumps(ctl_json(gensetd, "traffic"))


def test_gensetctl_keys_create(start_gensetd, sim: Sim) -> None:  # type: ignore[no-untyped-def]
    gensetd: Gensetd = start_gensetd(upstream_keys=True)
    r = ctl(gensetd, "keys", "create", "--use-case", "support-triage")
    assert r.returncode == 0, r.stderr
    key = next((w for w in r.stdout.split() if w.startswith("gk-")), None)
    assert key, f"no gk- key in output: {r.stdout}"
    raw = openai.OpenAI(base_url=gensetd.openai_base, api_key=key, max_retries=0).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "say: via cli key"}])
    assert raw.headers.get("x-genset-use-case") == "support-triage"


def test_gensetctl_bad_token(gensetd: Gensetd) -> None:
    env = dict(os.environ, GENSET_ADMIN_URL=gensetd.admin_url, GENSET_ADMIN_TOKEN="wrong")
    r = subprocess.run([str(binary("gensetctl")), "status"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0
    assert "401" in r.stderr or "token" in r.stderr.lower() or "unauthor" in r.stderr.lower()
