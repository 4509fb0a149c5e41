#!/usr/bin/env python3
"""Turn bench/proxy/run.sh's raw results (oha JSON files + meta.json) into the markdown that
goes into docs/benchmarks.md.  Usage: report.py RESULTS_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES = {
    "direct": "direct to nginx",
    "nginx-proxy": "nginx as a reverse proxy (reference)",
    "bare": "bare actix-web + hyper-util pass-through (reference)",
    "bare-reqwest": "bare actix-web + reqwest pass-through (reference)",
    "gensetd": "gensetd (recording on)",
    "litellm": "LiteLLM proxy",
    "portkey": "Portkey gateway",
}


def load(p: Path) -> dict[str, Any] | None:
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def ms(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def stats(r: dict[str, Any]) -> dict[str, Any]:
    s = r.get("summary", {})
    lp = r.get("latencyPercentiles", {})
    codes = r.get("statusCodeDistribution", {}) or {}
    # Requests still in flight when the run's time was up are not failures.
    errors = {k: v for k, v in (r.get("errorDistribution", {}) or {}).items() if "deadline" not in k}
    ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
    total = sum(codes.values()) + sum(errors.values())
    return {
        "p50": None if lp.get("p50") is None else lp["p50"] * 1000,
        "p99": None if lp.get("p99") is None else lp["p99"] * 1000,
        "rps": s.get("requestsPerSec"),
        "ok": ok,
        "total": total,
        "ok_pct": 100.0 * ok / total if total else 0.0,
        "errors": errors,
        "codes": codes,
    }


def main() -> None:
    d = Path(sys.argv[1])
    meta = load(d / "meta.json") or {}
    targets: list[str] = meta.get("targets", [])
    rates: list[int] = meta.get("rates", [])
    out: list[str] = []
    out.append(f"Proxy benchmark, {meta.get('date', '?')} on {meta.get('machine', '?')}. ")
    out.append(
        f"Load: `{meta.get('oha_rate_cmd', 'oha')}` per rate ({meta.get('duration')} each), "
        f"then closed loop `{meta.get('oha_max_cmd', '')}`. Upstream: nginx {meta.get('nginx_version', '')} "
        f"returning a fixed chat completion on loopback. Request: `POST /v1/chat/completions`, {meta.get('body_bytes')} bytes."
    )
    if meta.get("gensetd"):
        out.append(f"gensetd: `{meta['gensetd'].get('binary')}`, store SQLite, redact = \"{meta['gensetd'].get('redact')}\".")
    for t, v in (meta.get("versions") or {}).items():
        out.append(f"{NAMES.get(t, t)}: {v}.")
    out.append("")
    out.append("### Latency at fixed request rates (coordinated-omission corrected)")
    out.append("")
    out.append("| target | rate (req/s) | achieved (req/s) | ok % | p50 (ms) | p99 (ms) | added p50 (ms) | added p99 (ms) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        base = load(d / f"direct-{rate}.json")
        b = stats(base) if base else None
        for t in targets:
            r = load(d / f"{t}-{rate}.json")
            if r is None:
                out.append(f"| {NAMES.get(t, t)} | {rate} | not run | | | | | |")
                continue
            s = stats(r)
            add50 = add99 = "—"
            if t != "direct" and b and s["p50"] is not None and b["p50"] is not None:
                add50 = ms(s["p50"] - b["p50"])
                add99 = ms(s["p99"] - b["p99"])
            out.append(
                f"| {NAMES.get(t, t)} | {rate} | {s['rps']:.0f} | {s['ok_pct']:.1f} | {ms(s['p50'])} | {ms(s['p99'])} | {add50} | {add99} |"
            )
    out.append("")
    out.append(f"### Maximum throughput (closed loop, {meta.get('max_conns')} connections, {meta.get('duration')})")
    out.append("")
    out.append("| target | req/s | ok % | p50 (ms) | p99 (ms) |")
    out.append("|---|---:|---:|---:|---:|")
    for t in targets:
        r = load(d / f"{t}-max.json")
        if r is None:
            out.append(f"| {NAMES.get(t, t)} | not run | | | |")
            continue
        s = stats(r)
        out.append(f"| {NAMES.get(t, t)} | {s['rps']:.0f} | {s['ok_pct']:.1f} | {ms(s['p50'])} | {ms(s['p99'])} |")
    g = meta.get("gensetd")
    if g:
        out.append("")
        out.append("### gensetd resources and recorder")
        out.append("")
        out.append("| measure | value |")
        out.append("|---|---:|")
        for key, label in (
            ("rss_idle_mb", "RSS idle after start (MB)"),
            ("rss_max_rate_mb", f"RSS peak during the {max(rates) if rates else ''}/s run (MB)"),
            ("rss_after_max_mb", "RSS peak after the closed-loop run (MB)"),
            ("dropped_after_rates", "recorder drops after the fixed-rate runs"),
            ("dropped_after_max", "recorder drops after the closed-loop run"),
            ("requests_sent_ok", "requests answered 2xx through gensetd"),
            ("rows_recorded", "rows in the SQLite store at the end"),
        ):
            if key in g:
                out.append(f"| {label} | {g[key]} |")
    errs = []
    for p in sorted(d.glob("*.json")):
        r = load(p)
        if r and p.name != "meta.json":
            s = stats(r)
            if s["errors"] or any(not str(k).startswith("2") for k in s["codes"]):
                errs.append(f"- {p.stem}: status codes {s['codes']}, errors {s['errors']}")
    if errs:
        out.append("")
        out.append("Errors seen:")
        out.extend(errs)
    print("\n".join(out))


if __name__ == "__main__":
    main()
