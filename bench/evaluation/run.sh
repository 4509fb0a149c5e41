#!/usr/bin/env bash
# Evaluations vs live local traffic (issue 6): does the evaluator (replays of recorded
# exchanges on the same local model) raise the p95 latency of live local requests? Target: by
# at most 10%. One gensetd, one genset-sim as the cloud, loopback only; blocks with and without
# evaluations alternate in one run (base, eval, eval, base, base, eval, ...), with the same
# seeded Poisson arrivals and prompts in every block. See bench.py for what is measured.
#
#   bench/evaluation/run.sh                 # builds what is missing, runs (~10 min), prints markdown
#   bench/evaluation/run.sh --update-docs   # also appends the figures to docs/benchmarks.md
#
# Environment (all optional):
#   BENCH_RATE 0.5 (live requests/s)   BENCH_BLOCK_SECONDS 90   BENCH_REPS 3 (pairs of blocks)
#   BENCH_MAX_TOKENS 32   BENCH_THREADS 2   BENCH_SLOTS 4   BENCH_CONTEXT 2048
#   BENCH_REPLAYS_PER_ROUND 4 (a round is short, so an eval block ends soon after its last request)
#   BENCH_PROFILE release | dev (which cargo profile to build and run; default release)
#   BENCH_OUT   results dir (default ~/.cache/genset/bench-results/evaluation-<time>)
#   GENSETD / GENSET_SIM  binaries (default: built in $CARGO_TARGET_DIR for BENCH_PROFILE)
#   BENCH_NO_BUILD=1  build nothing; fail if a binary is missing
set -euo pipefail

cd "$(dirname "$0")/../.."
CMDLINE="bench/evaluation/run.sh${*:+ $*}"
for v in BENCH_RATE BENCH_BLOCK_SECONDS BENCH_REPS BENCH_MAX_TOKENS BENCH_THREADS BENCH_SLOTS BENCH_CONTEXT \
         BENCH_REPLAYS_PER_ROUND BENCH_PROFILE; do
  if [ -n "${!v:-}" ]; then CMDLINE="$v=${!v} $CMDLINE"; fi
done
UPDATE_DOCS=""
for arg in "$@"; do
  case $arg in
  --update-docs) UPDATE_DOCS=1 ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

CACHE=${GENSET_CACHE:-$HOME/.cache/genset}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
PROFILE=${BENCH_PROFILE:-release}
OUT=${BENCH_OUT:-$CACHE/bench-results/evaluation-$(date +%Y%m%d-%H%M%S)}
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
mkdir -p "$OUT"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

case $PROFILE in
release) DIR=release; FLAG=--release ;;
dev) DIR=debug; FLAG= ;;
*) die "BENCH_PROFILE must be release or dev" ;;
esac
if [ -z "${GENSETD:-}" ] || [ -z "${GENSET_SIM:-}" ]; then
  if [ -z "${BENCH_NO_BUILD:-}" ]; then
    say "cargo build $FLAG -p genset-cmd -p genset-sim --bins"
    timeout 3600 cargo build $FLAG -p genset-cmd -p genset-sim --bins >&2 || die "build failed"
  fi
fi
GENSETD=${GENSETD:-$CARGO_TARGET_DIR/$DIR/gensetd}
GENSET_SIM=${GENSET_SIM:-$CARGO_TARGET_DIR/$DIR/genset-sim}
[ -x "$GENSETD" ] || die "no gensetd binary at $GENSETD"
[ -x "$GENSET_SIM" ] || die "no genset-sim binary at $GENSET_SIM"

MODEL=$(provisioning/fetch-test-model.sh | tail -n1)
[ -f "$MODEL" ] || die "no model at $MODEL"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
python3 bench/evaluation/bench.py --gensetd "$GENSETD" --sim "$GENSET_SIM" --model "$MODEL" --sha256 "$SHA256" \
  --out "$OUT" --rate "${BENCH_RATE:-0.5}" --block-seconds "${BENCH_BLOCK_SECONDS:-90}" --reps "${BENCH_REPS:-3}" \
  --max-tokens "${BENCH_MAX_TOKENS:-32}" --threads "${BENCH_THREADS:-2}" --slots "${BENCH_SLOTS:-4}" \
  --context "${BENCH_CONTEXT:-2048}" --replays-per-round "${BENCH_REPLAYS_PER_ROUND:-4}" >"$OUT/table.md" \
  || die "bench.py failed (raw results in $OUT)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo " + uncommitted changes" || true)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
{
  echo
  echo "## Evaluations vs live local traffic"
  echo
  echo "Command: \`$CMDLINE\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($CPU), load average before: $LOAD_BEFORE, after: $LOAD_AFTER)."
  echo
  echo "gensetd ($PROFILE build of $REV$DIRTY), model \`$(basename "$MODEL")\`, ${BENCH_THREADS:-2} threads, ${BENCH_SLOTS:-4} slots, context ${BENCH_CONTEXT:-2048}; genset-sim as the cloud."
  echo "Live traffic: Poisson arrivals at ${BENCH_RATE:-0.5} requests/s, streamed chat completions to \`local/gemma\`, max_tokens ${BENCH_MAX_TOKENS:-32}, temperature 0, the same seeded arrivals and prompts in every ${BENCH_BLOCK_SECONDS:-90} s block;"
  echo "blocks without and with evaluations alternate (${BENCH_REPS:-3} of each). With evaluations, rounds of ${BENCH_REPLAYS_PER_ROUND:-4} replays of recorded exchanges run back to back on the same model (\`POST /api/v1/evaluations/run\`)."
  echo
  cat "$OUT/table.md"
} >"$OUT/report.md"
cat "$OUT/report.md"
if [ -n "$UPDATE_DOCS" ]; then
  cat "$OUT/report.md" >>docs/benchmarks.md
  say "appended to docs/benchmarks.md"
fi
say "raw results in $OUT"
