#!/usr/bin/env bash
# Failover under load, with the shipped [failover] defaults: 4 clients of steady traffic
# through gensetd, a hard cut-off of the primary (its port closed, connections dropped),
# local serving by the real test model, recovery. Runs the `hard_cut_off_under_load`
# scenario of daemon/genset/tests/failover_local.rs in a release build, REPS times, and
# prints the median of each figure; --update-docs writes them into docs/benchmarks.md.
#
#   bench/failover/run.sh [--reps N] [--update-docs]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=3
UPDATE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --update-docs) UPDATE=1; shift ;;
    *) echo "usage: $0 [--reps N] [--update-docs]" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/genset/target}"
[ -f "${GENSET_TEST_MODEL:-$HOME/.cache/genset/models/gemma-3-270m-q4_k_m.gguf}" ] || provisioning/fetch-test-model.sh >&2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo build --release -p genset --test failover_local >&2
for i in $(seq 1 "$REPS"); do
  echo "run $i/$REPS" >&2
  GENSET_FAILOVER_DEFAULTS=1 GENSET_FAILOVER_FIGURES="$OUT/run$i.json" \
    cargo test --release -q -p genset --test failover_local hard_cut_off_under_load -- --exact >&2
done
python3 - "$OUT" "$REPS" "$UPDATE" <<'PY'
import json, pathlib, statistics, sys, datetime, os, subprocess
out, reps, update = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
runs = [json.loads(p.read_text()) for p in sorted(out.glob("run*.json"))]
def med(k): return statistics.median(r[k] for r in runs)
rows = [
    ("client-visible failures (4 clients, whole run)", "client_visible_failures", "0", lambda v: v == 0),
    ("cut-off to breaker open, ms", "cut_to_breaker_open_ms", "<= 1000", lambda v: v <= 1000),
    ("requests during the outage", "outage_requests", "", None),
    ("  served locally", "outage_served_locally", "all", None),
    ("  rescued (fallback / cut-off)", "outage_rescued", "", None),
    ("  failed", "client_visible_failures", "0", None),
    ("upstream attempts per client request during the outage", "outage_upstream_attempts_per_request", "<= 1.2", lambda v: v <= 1.2),
    ("recovery to traffic back on the cloud, ms", "recovery_to_cloud_ms", "", None),
]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [f"Run of {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, commit {commit}; {len(runs)} runs, medians (each run: {', '.join(str(r['requests_total']) for r in runs)} requests).", "",
         "```sh", "bench/failover/run.sh --update-docs", "```", "",
         "| figure | median | runs | target |", "|---|---:|---|---|"]
for label, k, target, ok in rows:
    vals = [r[k] for r in runs]
    m = med(k)
    fmt = (lambda v: f"{v:.2f}") if isinstance(m, float) and not float(m).is_integer() else (lambda v: f"{v:.0f}")
    verdict = "" if ok is None else (": **met**" if ok(m) else ": **missed**")
    lines.append(f"| {label} | {fmt(m)} | {' / '.join(fmt(v) for v in vals)} | {target}{verdict} |")
text = "\n".join(lines)
print(text)
if update:
    doc = pathlib.Path("docs/benchmarks.md")
    s = doc.read_text()
    begin, end = "<!-- bench/failover/run.sh: generated figures begin -->", "<!-- bench/failover/run.sh: generated figures end -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in s:
        s = s[: s.index(begin)] + block + s[s.index(end) + len(end):]
    else:
        s += "\n## Failover under load\n\n" + ("`bench/failover/run.sh` runs the `hard_cut_off_under_load` scenario of "
             "`daemon/genset/tests/failover_local.rs` in a release build with the shipped `[failover]` defaults "
             "(probe every 30 s healthy / 1 s failing, open 5 s growing x2 with ±20% jitter, recovery hold 30 s, "
             "minimum 60 s between two mode flips): four clients send steady non-streamed requests "
             "(max_tokens 4) through gensetd to the simulator; the simulator's port is then closed and its "
             "connections dropped (a hard cut-off); the use case may be served by the local model "
             "(Gemma 3 270M, 4 slots, 2 threads); after 24 requests served locally the port reopens. "
             "Attempts are counted from the recorded rows (every attempt is a row; only the final one is what the "
             "client got).\n\n") + block + "\n"
    doc.write_text(s)
PY
