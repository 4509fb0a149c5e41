#!/usr/bin/env python3
"""Two use cases taking turns on one engine: TTFT and cached prompt tokens per request.

    python3 bench/engine/alternate.py LABEL BASE_URL MODEL      # e.g. new http://127.0.0.1:18191/v1 local/gemma

Two ~500-token system prompts (fresh nonces, so nothing is cached from before) alternate for
eight streamed requests (max_tokens 4, EOS banned); the first two prime the slots and are not
measured. Start the server yourself (gensetd or llama-server, 2+ slots). docs/benchmarks.md
("Two use cases, one engine") has the figures and how they were taken.
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

label, base, model = sys.argv[1], sys.argv[2], sys.argv[3]
srv = bench.Server(label, base, model, None, None, None)
tag = str(time.time_ns())
sps = [bench.system_prompt(f"uc{k}-{tag}") for k in range(2)]
ttfts, cached = [], []
for i in range(8):
    msgs = [{"role": "system", "content": sps[i % 2]}, {"role": "user", "content": bench.QUESTIONS[i % len(bench.QUESTIONS)]}]
    r = bench.stream_chat(srv, msgs, 4, ban_eog=True)
    if r.get("error") or not r["chunks"]:
        sys.exit(f"request {i} failed: {r.get('error')}")
    if i >= 2:
        ttfts.append((r["chunks"][0] - r["t0"]) * 1000)
        cached.append(((r["usage"] or {}).get("prompt_tokens_details") or {}).get("cached_tokens"))
print(label, "TTFT ms", [round(x) for x in ttfts], "median", round(statistics.median(ttfts)), "cached", cached)
