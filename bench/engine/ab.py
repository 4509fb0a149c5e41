"""Short single requests, TTFT, gensetd builds and llama-server side by side.

    python3 bench/engine/ab.py ROUNDS NAME=GENSETD_BINARY [NAME=GENSETD_BINARY ...] [llama=LLAMA_SERVER]

Each round starts every server afresh (the order reversed every other round), warms it up,
sends six short single requests, four concurrent 64-token streams, six more single requests,
and stops it. The first request of each group of six is left out (it pays for the start or
for the streams before it). Prints every TTFT and, at the end, the median per server. Model,
threads (2), slots (4), context and batch are the engine benchmark's (bench.py).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench  # noqa: E402

MODEL = os.environ.get("GENSET_TEST_MODEL", str(Path.home() / ".cache/genset/models/gemma-3-270m-q4_k_m.gguf"))
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def main() -> None:
    rounds = int(sys.argv[1])
    servers = dict(arg.split("=", 1) for arg in sys.argv[2:])
    work = Path(os.environ.get("BENCH_OUT", "/tmp/genset-ab"))
    work.mkdir(parents=True, exist_ok=True)
    res: dict[str, list[float]] = {k: [] for k in servers}
    order = list(servers)
    for rnd in range(rounds):
        for name in order if rnd % 2 == 0 else order[::-1]:
            a = argparse.Namespace(model=MODEL, sha256=SHA256, context=4096, batch=512,
                                   gensetd=servers[name], llama_server=servers[name])
            srv = bench.start_llama(a, "llama-like", 2, 4, work) if name == "llama" else bench.start_genset(a, 2, 4, work)
            try:
                bench.stream_chat(srv, [{"role": "user", "content": "Say hello."}], 16, ban_eog=True)
                s1 = bench.short_ttft(srv, f"f{rnd}", 6)
                bench.concurrent(srv, 4, 64, f"c{rnd}")
                s2 = bench.short_ttft(srv, f"g{rnd}", 6)
            finally:
                bench.stop(srv.proc)
            time.sleep(1)
            res[name] += s1[1:] + s2[1:]
            print(rnd, name, [round(x) for x in s1], [round(x) for x in s2], flush=True)
    for name, v in res.items():
        print(f"{name}: median {statistics.median(v):.1f} ms over {len(v)} requests")


if __name__ == "__main__":
    main()
