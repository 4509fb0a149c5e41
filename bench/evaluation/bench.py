#!/usr/bin/env python3
"""Live local traffic with and without evaluations running (issue 6), driven by
bench/evaluation/run.sh.  Standard library only.

One gensetd (its in-process llama.cpp engine serving model `gemma`) and one genset-sim as the
cloud.  First a use case `replayed` is recorded through the proxy (the simulator answers), so
that the evaluator has exchanges to replay.  Then, in one run, blocks alternate:

  base  live traffic only;
  eval  the same live traffic while evaluation rounds run back to back
        (`POST /api/v1/evaluations/run`, replays of `replayed` on the same local model).

Live traffic: open-loop Poisson arrivals at --rate requests/s (seeded, the same arrival times
and prompts in every block), each a streamed chat completion to `local/gemma` (max_tokens
--max-tokens, temperature 0), on its own thread.  Latency = request sent to last byte; TTFT =
request sent to the first content chunk.  An eval block ends by letting the round in flight
finish (its tail is not measured); a base block starts only then.

Raw samples go to OUT/samples.jsonl, the summary to OUT/summary.json and markdown to stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

QUESTIONS = [
    "Name three uses of copper.", "What is the capital of Portugal?", "Give a synonym for quick.",
    "How many legs does a spider have?", "What colour is the sky at noon?", "Name a planet with rings.",
    "What do bees make?", "Which animal is known as the king of the jungle?", "What is frozen water called?",
    "Name a fruit that is yellow.", "What is the opposite of cold?", "How many days are in a week?",
    "What do you call a baby cat?", "Which ocean is the largest?", "Name a musical instrument with strings.",
    "What gas do plants take in?", "What is the boiling point of water in Celsius?", "Name a shape with three sides.",
]

TOPICS = [
    "a lighthouse keeper who collects broken clocks", "a city where it rains upwards", "two rival bakers on the same street",
    "a robot learning to garden", "a librarian who can hear books whisper", "a ship lost in a sea of fog",
    "a village that forgets one word every day", "a cat elected mayor of a small town", "a mountain that moves one step a year",
    "a painter who paints only doors", "an island made of old keys", "a train that only runs on Tuesdays",
]


def percentile(xs: list[float], p: float) -> float | None:
    """Nearest rank, as genset_eval::stats::percentile."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(1, min(len(s), int(-(-p / 100 * len(s) // 1))))
    return s[k - 1]


def request(base: str, method: str, path: str, body: dict | None = None, headers: dict | None = None,
            timeout: float = 600) -> tuple[int, bytes]:
    u = urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    h = {"content-type": "application/json"} if data else {}
    h.update(headers or {})
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.read()
    c.close()
    return r.status, out


def live_call(proxy: str, prompt: str, max_tokens: int) -> dict:
    """One streamed local chat completion; latency and TTFT in ms."""
    u = urlparse(proxy)
    body = json.dumps({
        "model": "local/gemma", "stream": True, "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "user", "content": prompt}],
    }).encode()
    t0 = time.monotonic()
    ttft = None
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        c.request("POST", "/v1/chat/completions", body=body,
                  headers={"content-type": "application/json", "authorization": "Bearer sk-bench"})
        r = c.getresponse()
        status = r.status
        done = False
        while True:
            line = r.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                data = line[6:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                if ttft is None and b'"content"' in data:
                    try:
                        ch = json.loads(data)["choices"][0]["delta"].get("content")
                    except (ValueError, KeyError, IndexError):
                        ch = None
                    if ch:
                        ttft = (time.monotonic() - t0) * 1000
        c.close()
        ok = status == 200 and done
    except OSError as e:
        ok, status = False, str(e)
    return {"ok": ok, "status": status, "latency_ms": (time.monotonic() - t0) * 1000, "ttft_ms": ttft}


def start_sim(sim_bin: str, work: Path) -> tuple[subprocess.Popen, str]:
    out = work / "sim.out"
    proc = subprocess.Popen([sim_bin, "--listen", "127.0.0.1:0"], stdout=open(out, "wb"), stderr=open(work / "sim.err", "wb"),
                            stdin=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        m = re.search(r"listening on (http://\S+)", out.read_text())
        if m:
            return proc, m.group(1)
        time.sleep(0.05)
    raise RuntimeError("genset-sim did not start")


def start_gensetd(a: argparse.Namespace, sim_url: str, work: Path) -> tuple[subprocess.Popen, str, str, str]:
    d = work / "gensetd"
    d.mkdir(exist_ok=True)
    (d / "genset.toml").write_text(f"""[proxy]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
token_file = "{d}/admin.token"
[store]
url = "sqlite://{d}/genset.db"
[recording]
retention = "1d"

[[upstreams]]
name = "sim"
api = "openai"
base_url = "{sim_url}/v1"

[[models]]
name = "gemma"
path = "{a.model}"
sha256 = "{a.sha256}"
context = {a.context}
parallel = {a.slots}
threads = {a.threads}
chat_template = "gemma"

[evaluation]
enabled = false            # rounds are started by this benchmark, back to back in eval blocks
replays_per_round = {a.replays_per_round}
window = "1d"
timeout = "120s"

[[use_cases]]
name = "replayed"
match = {{ header = "x-genset-use-case", value = "replayed" }}
chain = ["sim", "local:gemma"]
kind = "generation"
""")
    out, err = d / "gensetd.out", d / "gensetd.err"
    env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_GENSET_LOG", "warn,genset::evaluate=info"))
    proc = subprocess.Popen([a.gensetd, "--config", str(d / "genset.toml")], stdout=open(out, "wb"), stderr=open(err, "wb"),
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        m = re.search(r"gensetd ready proxy=(http://\S+) admin=(http://\S+)", out.read_text())
        if m:
            token = (d / "admin.token").read_text().strip()
            return proc, m.group(1), m.group(2), token
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"gensetd did not get ready: {err.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def seed_replays(proxy: str, n: int) -> None:
    """Record `n` distinct exchanges of use case `replayed` (the simulator answers)."""
    for i in range(n):
        body = {"model": "gpt-4o-mini", "max_tokens": 40, "messages": [
            {"role": "system", "content": "You write one short paragraph."},
            {"role": "user", "content": f"Write two sentences about {TOPICS[i % len(TOPICS)]} (variant {i})."}]}
        st, out = request(proxy, "POST", "/v1/chat/completions", body,
                          {"authorization": "Bearer sk-bench", "x-genset-use-case": "replayed"})
        if st != 200:
            raise RuntimeError(f"seeding failed: {st} {out[:300]!r}")


def schedule(rate: float, seconds: float, seed: int) -> list[tuple[float, str]]:
    rng = random.Random(seed)
    t, out = 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append((t, rng.choice(QUESTIONS)))


def run_block(kind: str, proxy: str, admin: str, token: str, arrivals: list[tuple[float, str]], max_tokens: int) -> dict:
    results: list[dict] = []
    lock = threading.Lock()
    stop_eval = threading.Event()
    rounds: list[dict] = []

    def evaluator() -> None:
        while not stop_eval.is_set():
            st, out = request(admin, "POST", "/api/v1/evaluations/run", None, {"authorization": f"Bearer {token}"})
            if st == 200:
                rounds.append(json.loads(out))
            else:
                time.sleep(1)

    ev = None
    if kind == "eval":
        ev = threading.Thread(target=evaluator, daemon=True)
        ev.start()
        time.sleep(0.5)
    t0 = time.monotonic()
    threads = []
    for at, prompt in arrivals:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)

        def one(p=prompt, at=at):
            r = live_call(proxy, p, max_tokens)
            r["at"] = at
            with lock:
                results.append(r)

        th = threading.Thread(target=one, daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    elapsed = time.monotonic() - t0
    stop_eval.set()
    if ev is not None:
        ev.join()  # the round in flight finishes (not measured) before the next block starts
    evaluated = sum(u.get("replays", 0) + u.get("canaries", 0) for r in rounds for u in r.get("use_cases", []))
    deferred = sum(u.get("deferred", 0) for r in rounds for u in r.get("use_cases", []))
    yields = sum(u.get("yields", 0) for r in rounds for u in r.get("use_cases", []))
    return {"kind": kind, "elapsed_s": elapsed, "results": results, "rounds": len(rounds), "evaluated": evaluated,
            "deferred": deferred, "yields": yields}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--gensetd", required=True)
    p.add_argument("--sim", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--block-seconds", type=float, default=90)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--replays", type=int, default=40, help="exchanges recorded for the evaluator to replay")
    p.add_argument("--replays-per-round", type=int, default=4)
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="eval-bench-", dir=out))
    sim, sim_url = start_sim(a.sim, work)
    gensetd = None
    try:
        gensetd, proxy, admin, token = start_gensetd(a, sim_url, work)
        seed_replays(proxy, a.replays)
        time.sleep(1)  # the recorder's flush
        for q in QUESTIONS[:4]:  # warm-up
            live_call(proxy, q, a.max_tokens)
        arrivals = schedule(a.rate, a.block_seconds, seed=6)
        blocks = []
        order = []
        for rep in range(a.reps):
            order += ["base", "eval"] if rep % 2 == 0 else ["eval", "base"]
        for i, kind in enumerate(order):
            print(f"==> block {i + 1}/{len(order)}: {kind}", file=sys.stderr, flush=True)
            b = run_block(kind, proxy, admin, token, arrivals, a.max_tokens)
            blocks.append(b)
            with open(out / "samples.jsonl", "a") as f:
                for r in b["results"]:
                    f.write(json.dumps({"block": i, "kind": kind, **r}) + "\n")
            lat = [r["latency_ms"] for r in b["results"] if r["ok"]]
            print(f"    {len(lat)} ok of {len(b['results'])}, p95 {percentile(lat, 95):.0f} ms, evaluations {b['evaluated']}"
                  f" in {b['rounds']} rounds, yields {b['yields']}", file=sys.stderr, flush=True)
    finally:
        if gensetd is not None:
            stop(gensetd)
        stop(sim)

    summary = {"blocks": [{k: v for k, v in b.items() if k != "results"} for b in blocks]}
    for kind in ("base", "eval"):
        rs = [r for b in blocks if b["kind"] == kind for r in b["results"]]
        lat = [r["latency_ms"] for r in rs if r["ok"]]
        ttft = [r["ttft_ms"] for r in rs if r["ok"] and r["ttft_ms"] is not None]
        per_block = [percentile([r["latency_ms"] for r in b["results"] if r["ok"]], 95) for b in blocks if b["kind"] == kind]
        summary[kind] = {
            "requests": len(rs), "ok": len(lat), "failed": len(rs) - len(lat),
            "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95), "mean_ms": statistics.fmean(lat) if lat else None,
            "ttft_p50_ms": percentile(ttft, 50), "ttft_p95_ms": percentile(ttft, 95),
            "p95_per_block_ms": per_block,
            "evaluations": sum(b["evaluated"] for b in blocks if b["kind"] == kind),
            "rounds": sum(b["rounds"] for b in blocks if b["kind"] == kind),
            "yields": sum(b["yields"] for b in blocks if b["kind"] == kind),
            "seconds": sum(b["elapsed_s"] for b in blocks if b["kind"] == kind),
        }
    b, e = summary["base"], summary["eval"]
    summary["p95_ratio"] = e["p95_ms"] / b["p95_ms"] if b["p95_ms"] and e["p95_ms"] else None
    summary["params"] = vars(a)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    def f(x, d=0):
        return "-" if x is None else f"{x:,.{d}f}"

    ratio = summary["p95_ratio"]
    print("| live local traffic | without evaluations | with evaluations running | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| requests (ok / sent) | {b['ok']} / {b['requests']} | {e['ok']} / {e['requests']} | |")
    for key, label in [("p50_ms", "latency p50 ms"), ("p95_ms", "**latency p95 ms**"), ("mean_ms", "latency mean ms"),
                       ("ttft_p50_ms", "TTFT p50 ms"), ("ttft_p95_ms", "TTFT p95 ms")]:
        r = e[key] / b[key] if b[key] and e[key] else None
        print(f"| {label} | {f(b[key])} | {f(e[key])} | {f(r, 2)}x |")
    print(f"| p95 per block ms | {', '.join(f(x) for x in b['p95_per_block_ms'])} | {', '.join(f(x) for x in e['p95_per_block_ms'])} | |")
    print(f"| evaluations completed (rounds) | {b['evaluations']} ({b['rounds']}) | {e['evaluations']} ({e['rounds']}) | |")
    print(f"| evaluations that stepped aside for live requests | | {e['yields']} | |")
    verdict = "met" if ratio is not None and ratio <= 1.10 else "**missed**"
    print(f"\nTarget: evaluations raise live p95 by at most 10%: {verdict} (p95 ratio {f(ratio, 3)}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
