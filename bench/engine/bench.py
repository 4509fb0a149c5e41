#!/usr/bin/env python3
"""Side-by-side benchmark of gensetd's local engine and llama-server (issue 3), driven by
bench/engine/run.sh.  Standard library only.

One process runs at a time: for every (threads, repetition, server, slots) block the server is
started, warmed up, measured and stopped; the order of the servers is reversed on every other
repetition so that drift (other load, thermal) cancels out.  Everything goes through the
OpenAI streaming chat API (`POST /v1/chat/completions`, `stream: true`).

Raw samples go to RESULTS/samples.jsonl, the summary to RESULTS/summary.json; report.py turns
them into markdown.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Tokens that end a Gemma 3 generation (llama.cpp's EOG set for this vocabulary: <eos>,
# <end_of_turn> and </s>); banned with logit_bias on both
# servers so that every stream produces exactly max_tokens (llama-server's `ignore_eos` does
# the same with -inf biases; genset has no `ignore_eos` and maps a bias <= -100 to -inf).
EOG_BIAS = {"1": -100, "106": -100, "212": -100}

STORY_TOPICS = [
    "a lighthouse keeper who collects broken clocks", "a city where it rains upwards",
    "two rival bakers on the same street", "a robot learning to garden",
    "a librarian who can hear books whisper", "a ship lost in a sea of fog",
    "a village that forgets one word every day", "a cat elected mayor of a small town",
    "a mountain that moves one step a year", "a painter who paints only doors",
]

# ~500 tokens of system prompt (checked against usage.prompt_tokens at run time).
SYSTEM_RULES = [
    "You are the support assistant of Northwind Hardware, a family-owned chain of hardware stores.",
    "Always greet the customer politely and answer in plain, short sentences.",
    "Never invent prices; if you do not know a price, say that the store staff can confirm it.",
    "Opening hours are Monday to Friday from eight to six and Saturday from nine to four.",
    "The stores are closed on Sundays and on public holidays.",
    "Returns are accepted within thirty days with the receipt, for unused items in their original packaging.",
    "Power tools can be rented by the day or by the week; a deposit and an identity document are required.",
    "Paint can be mixed to any colour in about ten minutes at the paint counter.",
    "Keys can be cut while the customer waits; car keys with chips are not supported.",
    "Delivery is free for orders over one hundred and fifty euros within twenty kilometres.",
    "Lumber can be cut to size; the first ten cuts are free and later cuts cost fifty cents each.",
    "Gift cards never expire and can be used in every store of the chain.",
    "Customers with a trade account get a ten percent discount on contractor supplies.",
    "For safety questions about electrical work, recommend a licensed electrician.",
    "Do not give medical, legal or financial advice; politely decline and suggest a professional.",
    "If the customer is upset, apologise once, then focus on solving the problem.",
    "Loyalty points are earned at one point per euro and can be redeemed for vouchers.",
    "The garden centre is open from March to October and sells plants, soil, seeds and tools.",
    "Propane tanks can be exchanged at the back entrance during opening hours.",
    "Lost and found items are kept at the customer service desk for sixty days.",
    "Workshops for beginners run every Saturday morning: tiling, painting, basic plumbing, and wiring.",
    "Children under twelve must be accompanied by an adult in the workshop area.",
    "Special orders usually arrive within five to ten working days; the customer is called on arrival.",
    "Price matching is offered against local competitors for identical items in stock.",
    "Snow shovels, salt and de-icers are stocked from November to March.",
    "Screws, nails and bolts can be bought loose by weight or in boxes.",
    "The store offers a free recycling point for batteries, light bulbs and small electronics.",
    "Parking is free for two hours; loading bays are at the side of each building.",
    "Never share personal data of other customers or of staff members.",
    "When a question is unclear, ask one short clarifying question before answering.",
    "Answer in the language of the customer when possible, otherwise in English.",
    "Keep every answer under one hundred words unless the customer asks for detail.",
    "End every answer by asking whether there is anything else you can help with.",
    "Product warranties follow the manufacturer's terms; the receipt is proof of purchase.",
    "Damaged goods found at delivery must be reported within forty-eight hours with photographs.",
    "Bulk orders for contractors can be invoiced monthly with approved credit.",
    "The mobile app shows stock levels in each store, updated every fifteen minutes.",
    "Click and collect orders are ready within two hours and held for five days.",
    "Measuring services for kitchens and windows can be booked online or in store.",
    "Staff can recommend products but must mention at least two options when available.",
]
QUESTIONS = [
    "Can I return a drill I bought last week?", "When are you open on Saturday?",
    "Do you cut keys for cars?", "How long does a special order take?",
    "Is delivery free for a 200 euro order?", "Can you mix a dark green paint?",
    "Do you recycle old batteries?", "How do loyalty points work?",
    "Can I rent a floor sander for a weekend?", "Do you sell tomato seeds in April?",
]


def system_prompt(nonce: str | None = None) -> str:
    text = " ".join(SYSTEM_RULES[:29])
    return (f"[session {nonce}] " + text) if nonce else text


# --- HTTP / SSE ------------------------------------------------------------------------------

class Server:
    def __init__(self, name: str, base: str, model: str, proc: subprocess.Popen, log_out: Path, log_err: Path):
        self.name, self.base, self.model, self.proc = name, base, model, proc
        self.log_out, self.log_err = log_out, log_err
        u = base.split("//", 1)[1]
        self.host, port = u.split("/", 1)[0].rsplit(":", 1)
        self.port = int(port)


def stream_chat(srv: Server, messages: list[dict], max_tokens: int, ban_eog: bool, timeout: float = 120.0) -> dict:
    """One streaming chat completion; arrival time of every content chunk."""
    body: dict[str, Any] = {
        "model": srv.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True},
    }
    if ban_eog:
        body["logit_bias"] = EOG_BIAS
    data = json.dumps(body).encode()
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"t0": t0, "chunks": [], "usage": None, "finish": None, "error": None, "text": ""}
    try:
        conn.request("POST", "/v1/chat/completions", body=data,
                     headers={"content-type": "application/json", "authorization": "Bearer sk-bench"})
        r = conn.getresponse()
        if r.status != 200:
            res["error"] = f"HTTP {r.status}: {r.read()[:300]!r}"
            return res
        texts = []
        while True:
            line = r.readline()
            if not line:
                break
            now = time.perf_counter()
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            ev = json.loads(payload)
            if "error" in ev:
                res["error"] = json.dumps(ev["error"])[:300]
                break
            if ev.get("usage"):
                res["usage"] = ev["usage"]
            if ev.get("timings"):
                res["timings"] = ev["timings"]
            for ch in ev.get("choices") or []:
                c = (ch.get("delta") or {}).get("content")
                if c:
                    res["chunks"].append(now)
                    texts.append(c)
                if ch.get("finish_reason"):
                    res["finish"] = ch["finish_reason"]
        res["text"] = "".join(texts)
    except Exception as e:  # noqa: BLE001 - recorded and reported
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    res["t_end"] = time.perf_counter()
    return res


def simultaneous(srv: Server, conversations: list[list[dict]], max_tokens: int) -> list[dict]:
    """One streaming request per conversation, all released at once (a barrier); results in order."""
    n = len(conversations)
    results: list[dict] = [{} for _ in range(n)]
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        results[i] = stream_chat(srv, conversations[i], max_tokens, ban_eog=True)

    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return results


def concurrent(srv: Server, n: int, max_tokens: int, tag: str) -> dict:
    """n simultaneous streams with distinct short prompts; decode and TTFT figures."""
    results = simultaneous(srv, [
        [{"role": "user", "content": f"({tag}-{i}) Write a long, detailed story about {STORY_TOPICS[i % len(STORY_TOPICS)]}."}]
        for i in range(n)
    ], max_tokens)
    errs = [r["error"] for r in results if r.get("error")]
    if errs:
        return {"error": errs[0]}
    out: dict[str, Any] = {"streams": n}
    counts = [(r["usage"] or {}).get("completion_tokens", len(r["chunks"])) for r in results]
    out["completion_tokens"] = counts
    out["finish"] = [r["finish"] for r in results]
    out["full_count"] = all(c == max_tokens for c in counts) and all(f == "length" for f in out["finish"])
    ttfts = [r["chunks"][0] - r["t0"] for r in results if r["chunks"]]
    per_stream = []
    for r, c in zip(results, counts):
        ch = r["chunks"]
        if len(ch) >= 2 and ch[-1] > ch[0]:
            per_stream.append((c - 1) / (ch[-1] - ch[0]))
    first = min(r["chunks"][0] for r in results if r["chunks"])
    last = max(r["chunks"][-1] for r in results if r["chunks"])
    start = min(r["t0"] for r in results)
    # Concurrent streams' first tokens come in groups (whoever arrived before the server's next
    # step starts is in it), so the median over streams jumps between groups: report the mean.
    out["ttfts_ms"] = sorted(round(x * 1000, 1) for x in ttfts)
    out["ttft_ms"] = statistics.mean(ttfts) * 1000 if ttfts else None
    out["ttft_max_ms"] = max(ttfts) * 1000 if ttfts else None
    # Decode throughput: tokens after each stream's first, over the window from the first
    # first-token to the last token (prompt processing excluded as far as it can be).
    out["agg_decode_tps"] = sum(c - 1 for c in counts) / (last - first) if last > first else None
    out["per_stream_tps"] = statistics.median(per_stream) if per_stream else None
    # End to end: all completion tokens over the whole run, prompts included.
    out["e2e_tps"] = sum(counts) / (last - start)
    ts = [r.get("timings") for r in results if r.get("timings")]
    if ts:
        out["server_predicted_tps"] = statistics.median(t.get("predicted_per_second", 0) for t in ts)
    return out


def cold_ttft(srv: Server, tag: str) -> tuple[float, int]:
    """TTFT (ms) and prompt tokens of one request with a fresh ~500-token system prompt."""
    r = stream_chat(srv, [{"role": "system", "content": system_prompt(f"{tag}-{time.time_ns()}")},
                          {"role": "user", "content": QUESTIONS[0]}], 4, ban_eog=True)
    if r.get("error") or not r["chunks"]:
        raise RuntimeError(f"{srv.name} cold request failed: {r.get('error')}")
    return (r["chunks"][0] - r["t0"]) * 1000, (r["usage"] or {}).get("prompt_tokens", 0)


def short_ttft(srv: Server, tag: str, n: int) -> list[float]:
    """TTFT (ms) of n short single requests, one after another: the 1-stream TTFT row from
    more than the one request the decode run makes, so a single slow request on a shared
    machine does not decide it. Distinct prompts, shaped like the decode runs' ones."""
    out = []
    for i in range(n):
        r = stream_chat(srv, [{"role": "user", "content":
                               f"({tag}-{i}) Write a long, detailed story about {STORY_TOPICS[i % len(STORY_TOPICS)]}."}],
                        2, ban_eog=True)
        if r.get("error") or not r["chunks"]:
            raise RuntimeError(f"{srv.name} short request failed: {r.get('error')}")
        out.append((r["chunks"][0] - r["t0"]) * 1000)
    return out


def prefix_test(srv: Server, tag: str, n: int) -> dict:
    """TTFT with a ~500-token system prompt: cold (a unique nonce at its start, so nothing can
    be reused) vs. hit (the same system prompt as the request before, a new question)."""
    cold, hit, ptoks, cached = [], [], [], []

    def ttft(msgs: list[dict]) -> float | None:
        r = stream_chat(srv, msgs, 4, ban_eog=True)
        if r.get("error") or not r["chunks"]:
            raise RuntimeError(f"{srv.name} prefix request failed: {r.get('error')}")
        u = r["usage"] or {}
        ptoks.append(u.get("prompt_tokens"))
        cached.append((u.get("prompt_tokens_details") or {}).get("cached_tokens"))
        return (r["chunks"][0] - r["t0"]) * 1000

    for i in range(n):
        cold.append(ttft([{"role": "system", "content": system_prompt(f"{tag}-{i}-{time.time_ns()}")},
                          {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]))
    sp = system_prompt()
    # Prime: the first request with this system prompt (a miss), not measured.
    ttft([{"role": "system", "content": sp}, {"role": "user", "content": QUESTIONS[-1]}])
    hit_cached = []
    for i in range(n):
        hit.append(ttft([{"role": "system", "content": sp}, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]))
        hit_cached.append(cached[-1])
    return {"cold_ms": cold, "hit_ms": hit, "prompt_tokens": ptoks[0], "hit_cached_tokens": hit_cached}


def shared_burst(srv: Server, tag: str, n: int) -> dict:
    """n simultaneous requests of one use case at cold slots: the same fresh ~500-token system
    prompt (a new nonce, so nothing is cached), a different question each. This is the
    moment of a failover flip: a use case's traffic lands on the local engine at once."""
    sp = system_prompt(f"{tag}-{time.time_ns()}")
    results = simultaneous(srv, [
        [{"role": "system", "content": sp}, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(n)
    ], 8)
    errs = [r["error"] for r in results if r.get("error")]
    if errs:
        raise RuntimeError(f"{srv.name} shared-prompt burst failed: {errs[0]}")
    ttfts = [(r["chunks"][0] - r["t0"]) * 1000 for r in results if r["chunks"]]
    cached = [((r["usage"] or {}).get("prompt_tokens_details") or {}).get("cached_tokens") for r in results]
    return {"streams": n, "ttft_mean_ms": statistics.mean(ttfts), "ttft_max_ms": max(ttfts),
            "ttfts_ms": sorted(round(x, 1) for x in ttfts), "cached_tokens": cached,
            "prompt_tokens": (results[0]["usage"] or {}).get("prompt_tokens")}


# --- processes -------------------------------------------------------------------------------

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_jiffies() -> int:
    """Non-idle CPU time of the whole machine (all CPUs), in clock ticks."""
    f = open("/proc/stat").readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return user + nice + system + irq + softirq + steal


def proc_jiffies(pid: int) -> int:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except OSError:
        return 0


class CpuMeter:
    """CPU used during a block by processes other than the server under test and this client,
    in cores (1.0 = one core busy the whole time): other builds on a shared machine."""

    def __init__(self, pid: int) -> None:
        self.pid, self.t = pid, time.monotonic()
        self.m, self.s, self.me = machine_busy_jiffies(), proc_jiffies(pid), proc_jiffies(os.getpid())

    def foreign_cores(self) -> float:
        wall = time.monotonic() - self.t
        d = (machine_busy_jiffies() - self.m) - (proc_jiffies(self.pid) - self.s) - (proc_jiffies(os.getpid()) - self.me)
        return max(0.0, d / CLK_TCK / wall) if wall > 0 else 0.0


def busy_cores(seconds: float = 2.0) -> float:
    """Cores busy with something else while nothing of ours runs."""
    m, me, t = machine_busy_jiffies(), proc_jiffies(os.getpid()), time.monotonic()
    time.sleep(seconds)
    return max(0.0, ((machine_busy_jiffies() - m) - (proc_jiffies(os.getpid()) - me)) / CLK_TCK / (time.monotonic() - t))


def wait_ready_http(host: str, port: int, path: str, proc: subprocess.Popen, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            c = http.client.HTTPConnection(host, port, timeout=2)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def log_paths(work: Path, name: str) -> tuple[Path, Path]:
    """Fresh log files for one server start (a reused file would hold an old `ready` line)."""
    i = 0
    while (work / f"{name}.{i}.out").exists():
        i += 1
    return work / f"{name}.{i}.out", work / f"{name}.{i}.err"


def start_llama(a: argparse.Namespace, variant: str, threads: int, slots: int, work: Path) -> Server:
    port = free_port()
    cmd = [a.llama_server, "-m", a.model, "--host", "127.0.0.1", "--port", str(port),
           "-t", str(threads), "-tb", str(threads), "-c", str(a.context * slots), "-np", str(slots),
           "-b", str(a.batch), "-ub", str(a.batch), "--no-jinja", "--chat-template", "gemma", "--no-webui"]
    if variant == "llama-like":
        cmd += ["--swa-full", "-kvu"]
    out, err = log_paths(work, f"{variant}-t{threads}-p{slots}")
    proc = subprocess.Popen(cmd, stdout=open(out, "wb"), stderr=open(err, "wb"), stdin=subprocess.DEVNULL,
                            start_new_session=True)
    if not wait_ready_http("127.0.0.1", port, "/health", proc, 120):
        stop(proc)
        raise RuntimeError(f"llama-server did not get ready: {err.read_text()[-2000:]}")
    return Server(variant, f"http://127.0.0.1:{port}", "gemma", proc, out, err)


def start_genset(a: argparse.Namespace, threads: int, slots: int, work: Path) -> Server:
    d = Path(tempfile.mkdtemp(prefix=f"gensetd-t{threads}-p{slots}-", dir=work))
    (d / "genset.toml").write_text(f"""[proxy]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
token_file = "{d}/admin.token"
[store]
url = "sqlite://{d}/genset.db"
[recording]
retention = "1d"

[[models]]
name = "gemma"
path = "{a.model}"
sha256 = "{a.sha256}"
context = {a.context}
parallel = {slots}
threads = {threads}
batch = {a.batch}
chat_template = "gemma"
""")
    out, err = log_paths(work, f"genset-t{threads}-p{slots}")
    env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_GENSET_LOG", "warn,genset_engine=debug"))
    proc = subprocess.Popen([a.gensetd, "--config", str(d / "genset.toml")], stdout=open(out, "wb"),
                            stderr=open(err, "wb"), stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        m = re.search(r"gensetd ready proxy=(http://\S+)", out.read_text())
        if m:
            return Server("genset", m.group(1), "local/gemma", proc, out, err)
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
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def profile_lines(path: Path, since: int) -> list[dict]:
    """genset_engine's `engine step profile` debug lines written after byte offset `since`."""
    out = []
    txt = path.read_bytes()[since:].decode(errors="replace")
    for line in txt.splitlines():
        if "engine step profile" not in line:
            continue
        kv = dict(re.findall(r"(\w+)=([0-9.]+)", re.sub(r"\x1b\[[0-9;]*m", "", line)))
        try:
            out.append({k: float(kv[k]) for k in ("steps", "decode_ms_per_step", "sample_ms_per_step", "decode_tokens", "prompt_tokens")})
        except KeyError:
            pass
    return out


# --- the run ---------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gensetd", required=True)
    p.add_argument("--llama-server", required=True)
    p.add_argument("--llama-bench", default="", help="llama-bench binary: llama.cpp alone, the reference row (optional)")
    p.add_argument("--model", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--streams", default="1,4,8")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--slots", type=int, default=4, help="slots of the main servers (streams above use that many)")
    p.add_argument("--prefix-n", type=int, default=3)
    p.add_argument("--short-n", type=int, default=5, help="short single requests for the 1-stream TTFT row")
    p.add_argument("--variants", default="genset,llama-like,llama-default")
    p.add_argument("--max-foreign", type=float, default=0.25,
                   help="cores other processes may use during a block before it is measured again (up to 3 attempts)")
    p.add_argument("--quiet-wait", type=float, default=180, help="seconds to wait for a quiet machine before each block")
    p.add_argument("--deadline", type=float, default=3600, help="give up (keeping what was measured) after this many seconds")
    a = p.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "logs"
    work.mkdir(exist_ok=True)
    samples = open(out / "samples.jsonl", "a")
    threads_list = [int(x) for x in a.threads.split(",")]
    streams = [int(x) for x in a.streams.split(",")]
    variants = a.variants.split(",")
    deadline = time.monotonic() + a.deadline
    live: list[subprocess.Popen] = []

    def on_signal(*_: Any) -> None:
        for pr in live:
            stop(pr)
        sys.exit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def record(**kw: Any) -> None:
        kw["time"] = time.time()
        kw["loadavg"] = open("/proc/loadavg").read().split()[:3]
        samples.write(json.dumps(kw) + "\n")
        samples.flush()

    def log(msg: str) -> None:
        print(f"==> {msg}", file=sys.stderr, flush=True)

    def wait_quiet() -> float:
        """Wait (bounded) until nothing else uses the CPU: other builds share this machine.
        Returns the cores others used at the last look."""
        quiet_end = time.monotonic() + a.quiet_wait
        while (busy := busy_cores()) > a.max_foreign and time.monotonic() < quiet_end:
            log(f"  other processes use {busy:.2f} cores; waiting for a quiet machine")
        return busy

    def run_block(v: str, threads: int, rep: int, slots: int, counts: list[int], main_block: bool, attempt: int) -> bool:
        """Start the server, measure, stop it. False when it is worth another attempt: the server
        died, or other processes used more than --max-foreign cores meanwhile."""
        busy = wait_quiet()
        log(f"threads={threads} rep={rep + 1}/{a.reps} {v} slots={slots}: start"
            + (f" (attempt {attempt})" if attempt > 1 else "") + f"; idle machine busy {busy:.2f} cores")
        srv = start_genset(a, threads, slots, work) if v == "genset" else start_llama(a, v, threads, slots, work)
        live.append(srv.proc)
        err_off = 0
        meter = CpuMeter(srv.proc.pid)
        base = dict(variant=v, threads=threads, rep=rep, slots=slots)
        pending: list[dict] = []  # recorded only when the whole block succeeds
        try:
            time.sleep(0.5)
            if main_block:
                pending.append(dict(kind="rss_loaded", **base, **rss_kb(srv.proc.pid)))
            # Warm-up: one short generation (first touch of weights and buffers).
            w = stream_chat(srv, [{"role": "user", "content": "Say hello."}], 16, ban_eog=True)
            if w.get("error"):
                raise RuntimeError(f"{v} warm-up failed: {w['error']}")
            if main_block:
                pending.append(dict(kind="rss_warm", **base, **rss_kb(srv.proc.pid)))
                # Cold ~500-token prompts before any concurrent run (the prefix test's cold
                # requests come after them, with the other slots' KV still cached).
                fresh = [cold_ttft(srv, f"fresh-r{rep}t{threads}a{attempt}-{i}")[0] for i in range(2)]
                pending.append(dict(kind="cold_fresh", **base, cold_ms=fresh))
            for n in counts:
                r = concurrent(srv, n, a.max_tokens, f"r{rep}t{threads}n{n}a{attempt}")
                if r.get("error"):
                    raise RuntimeError(f"{n} streams: {r['error']}")
                pending.append(dict(kind="decode", **base, **r))
                log(f"  {n} streams: agg {r['agg_decode_tps']:.1f} tok/s, per stream {r['per_stream_tps']:.1f}, "
                    f"TTFT {r['ttft_ms']:.0f} ms, tokens {r['completion_tokens']}")
            if main_block and 1 in counts:
                st = short_ttft(srv, f"short-r{rep}t{threads}a{attempt}", a.short_n)
                pending.append(dict(kind="ttft_single", **base, ttft_ms=st))
                log(f"  {len(st)} short single requests: TTFT median {statistics.median(st):.0f} ms")
            if main_block:
                pt = prefix_test(srv, f"r{rep}t{threads}a{attempt}", a.prefix_n)
                pending.append(dict(kind="prefix", **base, **pt))
                log(f"  prefix ({pt['prompt_tokens']} prompt tokens): cold {statistics.median(pt['cold_ms']):.0f} ms, "
                    f"hit {statistics.median(pt['hit_ms']):.0f} ms, cached {pt['hit_cached_tokens']}")
                sb = shared_burst(srv, f"burst-r{rep}t{threads}a{attempt}", slots)
                pending.append(dict(kind="shared_burst", **base, **sb))
                log(f"  {slots} streams, one fresh system prompt: TTFT mean {sb['ttft_mean_ms']:.0f} ms, "
                    f"slowest {sb['ttft_max_ms']:.0f} ms, cached {sb['cached_tokens']}")
                pending.append(dict(kind="rss_after", **base, **rss_kb(srv.proc.pid)))
            if v == "genset":
                prof = profile_lines(srv.log_err, err_off)
                if prof:
                    pending.append(dict(kind="genset_profile", **base, profile=prof))
            foreign = meter.foreign_cores()
            last_try = attempt == 3 or time.monotonic() > deadline
            if foreign > a.max_foreign and not last_try:
                log(f"  other processes used {foreign:.2f} cores during the block: measuring it again")
                record(kind="contaminated", **base, foreign_cores=foreign, attempt=attempt, rows=pending)
                return False
            for row in pending:
                record(**row, foreign_cores=foreign, attempt=attempt)
            return True
        except Exception as e:  # noqa: BLE001
            time.sleep(0.2)
            rc = srv.proc.poll()
            died = rc is not None
            how = f"; the server exited with {'signal ' + str(-rc) if rc is not None and rc < 0 else rc}" if died else ""
            log(f"  FAILED: {e}{how}")
            record(kind="failure", **base, error=f"{e}{how}", attempt=attempt)
            return not died  # a live server that failed is a result; a dead one gets a retry
        finally:
            stop(srv.proc)
            live.remove(srv.proc)
            time.sleep(1.0)  # let the stopped server's threads go before the next start

    def reference(threads: int, rep: int) -> None:
        """llama.cpp's own decode loop and prompt processing, no server (llama-bench: one sequence,
        random tokens, no sampling): what a server on this llama.cpp can at best reach."""
        if not a.llama_bench:
            return
        wait_quiet()
        cmd = [a.llama_bench, "-m", a.model, "-t", str(threads), "-p", "512", "-n", str(a.max_tokens),
               "-b", str(a.batch), "-ub", str(a.batch), "-r", "3", "-o", "json"]
        log(f"threads={threads} rep={rep + 1}/{a.reps} llama-bench (reference)")
        try:
            res = subprocess.run(cmd, capture_output=True, timeout=600, check=True)
            tests = json.loads(res.stdout)
        except (subprocess.SubprocessError, json.JSONDecodeError) as e:
            log(f"  llama-bench failed: {e}")
            return
        tg = next((t["avg_ts"] for t in tests if t.get("n_gen") and not t.get("n_prompt")), None)
        pp = next((t["avg_ts"] for t in tests if t.get("n_prompt") and not t.get("n_gen")), None)
        record(kind="reference", variant="llama-bench", threads=threads, rep=rep, tg_tps=tg, pp_tps=pp, cmd=" ".join(cmd[1:]))
        log(f"  llama.cpp alone: decode {tg:.1f} tok/s, prompt {pp:.0f} tok/s" if tg and pp else "  llama-bench: no result")

    # Blocks: the main server (slots = a.slots) serves every stream count <= slots, the prefix
    # test and the RSS reading; a server with `s` slots serves each larger stream count s.
    blocks = [(a.slots, [s for s in streams if s <= a.slots], True)]
    blocks += [(s, [s], False) for s in streams if s > a.slots]

    for threads in threads_list:
        for rep in range(a.reps):
            order = variants if rep % 2 == 0 else list(reversed(variants))
            reference(threads, rep)
            for slots, counts, main_block in blocks:
                for v in order:
                    for attempt in (1, 2, 3):
                        if time.monotonic() > deadline:
                            log("deadline reached; stopping")
                            samples.close()
                            return
                        if run_block(v, threads, rep, slots, counts, main_block, attempt):
                            break
    samples.close()


if __name__ == "__main__":
    main()
