#!/usr/bin/env bash
# The proxy benchmark (issue 2): added latency and maximum throughput of gensetd, LiteLLM and
# Portkey, each in front of the same instant upstream (nginx returning a fixed chat completion),
# against going direct to nginx, side by side in one run, on loopback only. A second nginx as a
# plain reverse proxy (`nginx-proxy`: no recording, pooled upstream connections) is the
# reference: what one extra proxy hop costs on this machine at the least.
#
#   bench/proxy/run.sh            # installs what is missing, runs everything (~4 min), prints markdown
#
# For each target: a 2 s warm-up, then `oha -q RATE --latency-correction` for each rate (p50/p99,
# coordinated omission corrected), then a closed loop (`-c MAX_CONNS`) for maximum throughput.
# For gensetd also: RSS idle, RSS during the highest-rate run, recorder drops from /metrics and the
# number of rows that reached the SQLite store.
#
# Environment (all optional):
#   BENCH_TARGETS   "direct nginx-proxy gensetd litellm portkey"; add "bare" for the bare
#                   pass-through on gensetd's stack (bench/proxy/bare: actix-web + hyper-util's
#                   client), "bare-reqwest" for the same through reqwest; built on first use
#                                                         BENCH_RATES  "100 500 1000"
#   BENCH_DURATION  10s                                  BENCH_MAX_CONNS 64
#   BENCH_REDACT    pii (gensetd's recording.redact)     BENCH_OUT    results dir (default ~/.cache/genset/bench-results/<time>)
#   GENSETD         gensetd binary (default: release build in $CARGO_TARGET_DIR, built if missing/stale)
#   BENCH_NO_INSTALL=1   never install anything; skip targets whose software is missing
#   BENCH_MAX_LOAD  1.5: first wait until the 1-minute load average is below it
#   BENCH_LOAD_WAIT 600: ... but no longer than this many seconds
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=${GENSET_CACHE:-$HOME/.cache/genset}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
TARGETS=${BENCH_TARGETS:-"direct nginx-proxy gensetd litellm portkey"}
RATES=${BENCH_RATES:-"100 500 1000"}
DURATION=${BENCH_DURATION:-10s}
MAX_CONNS=${BENCH_MAX_CONNS:-64}
RATE_CONNS=${BENCH_RATE_CONNS:-50}
REDACT=${BENCH_REDACT:-pii}
OUT=${BENCH_OUT:-$CACHE/bench-results/$(date +%Y%m%d-%H%M%S)}
VENV=$CACHE/bench-venv
NODE_DIR=$CACHE/bench-node
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/genset-bench.XXXXXX)

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
drop_target() { TARGETS=$(echo " $TARGETS " | sed "s/ $1 / /" | xargs); }

# --- processes we start, stopped by their process-group id at exit ---------------------------
declare -A PIDS=()
start_bg() { # NAME CMD... : start in its own session, logs under $WORK
  local name=$1; shift
  setsid "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
  PIDS[$name]=$!
}
stop_bg() {
  local name=$1 pid=${PIDS[$1]:-}
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}
cleanup() {
  for n in "${!PIDS[@]}"; do stop_bg "$n"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # URL [timeout_s] : until anything answers HTTP
  local url=$1 t=${2:-60} i=0
  while [ $i -lt $((t * 10)) ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
    [ "$code" != "000" ] && return 0
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

# --- installs -------------------------------------------------------------------------------
install_ok() { [ -z "${BENCH_NO_INSTALL:-}" ]; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  install_ok || { echo "nginx missing" >&2; exit 1; }
  say "installing nginx-light"
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nginx-light
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

OHA=$(command -v oha || true)
[ -z "$OHA" ] && [ -x "$HOME/.cargo/bin/oha" ] && OHA=$HOME/.cargo/bin/oha
if [ -z "$OHA" ] && install_ok; then
  say "installing oha (cargo install --locked oha; a few minutes)"
  if CARGO_TARGET_DIR=$CACHE/oha-target cargo install --locked oha >&2; then OHA=$HOME/.cargo/bin/oha; fi
fi
[ -n "$OHA" ] || { echo "oha is required (cargo install --locked oha)" >&2; exit 1; }
OHA_FMT=(-j)
"$OHA" --help 2>/dev/null | grep -q -- '--output-format' && OHA_FMT=(--output-format json)

if has_target litellm && [ ! -x "$VENV/bin/litellm" ]; then
  if install_ok; then
    say "installing LiteLLM proxy into $VENV"
    { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'litellm[proxy]'; } >&2 || { warn "LiteLLM install failed; skipping it"; drop_target litellm; }
  else drop_target litellm; fi
fi
PORTKEY_JS=$NODE_DIR/node_modules/@portkey-ai/gateway/build/start-server.js
if has_target portkey && [ ! -f "$PORTKEY_JS" ]; then
  if install_ok && command -v npm >/dev/null; then
    say "installing Portkey gateway into $NODE_DIR"
    { mkdir -p "$NODE_DIR" && (cd "$NODE_DIR" && npm install --no-audit --no-fund -s @portkey-ai/gateway); } >&2 || { warn "Portkey install failed; skipping it"; drop_target portkey; }
  else drop_target portkey; fi
fi

if has_target gensetd; then
  if [ -z "${GENSETD:-}" ]; then
    GENSETD=$CARGO_TARGET_DIR/release/gensetd
    if [ -z "${BENCH_NO_INSTALL:-}" ]; then
      say "cargo build --release -p genset-cmd --bin gensetd"
      cargo build --release -p genset-cmd --bin gensetd >&2 || warn "release build of gensetd failed"
    fi
  fi
  [ -x "$GENSETD" ] || { warn "no gensetd binary at $GENSETD; skipping gensetd"; drop_target gensetd; }
fi

# --- wait for a quiet machine (a build that just finished skews every target's rows) ---------
. bench/quiet.sh
wait_for_quiet
say "load average before: $LOAD_BEFORE (waited ${LOAD_WAITED}s)"
export LOAD_BEFORE

# --- the instant upstream -------------------------------------------------------------------
NGX_PORT=$(free_port)
mkdir -p "$WORK/nginx-tmp"
sed -e "s#@DIR@#$WORK#g" -e "s#@PORT@#$NGX_PORT#g" bench/proxy/nginx.conf.in > "$WORK/nginx.conf"
start_bg nginx "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/nginx-error.log"
UPSTREAM=http://127.0.0.1:$NGX_PORT/v1
wait_http "$UPSTREAM/chat/completions" 10 || { cat "$WORK"/nginx*.err "$WORK/nginx-error.log" >&2; echo "nginx did not start" >&2; exit 1; }

BODY=$(cat bench/proxy/request.json) # the request every target gets (bench/proxy/cpu.sh sends it too)
CLIENT_KEY=sk-bench-client-0123456789abcdef
LITELLM_KEY=sk-litellm-bench-master
declare -a HDRS

run_oha() { # FILE URL [oha args...] ; uses HDRS
  local file=$1 url=$2; shift 2
  "$OHA" --no-tui "${OHA_FMT[@]}" -m POST -H 'content-type: application/json' "${HDRS[@]}" -d "$BODY" "$@" "$url" >"$file" 2>"$file.err" \
    || warn "oha failed for $file: $(tail -n 3 "$file.err")"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
sampler_start() { # PID FILE
  ( while kill -0 "$1" 2>/dev/null; do rss_kb "$1"; sleep 0.2; done ) >"$2" &
  SAMPLER=$!
}
sampler_stop() { kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; }
max_mb() { sort -n "$1" | tail -n 1 | awk '{printf "%.1f", $1/1024}'; }
dropped() { curl -s --max-time 5 "$1/metrics" | awk '/^genset_recorder_dropped_total/ {s+=$NF; f=1} END {if (f) print s+0; else print "n/a"}'; }

declare -A GMETA=()

bench_target() { # TARGET URL PID(optional, for RSS sampling)
  local t=$1 url=$2 pid=${3:-}
  say "$t: warm-up"
  run_oha "$WORK/warmup.json" "$url" -z 2s -q 200 -c 16
  for rate in $RATES; do
    say "$t: $rate req/s for $DURATION"
    local top=${RATES##* }
    if [ -n "$pid" ] && [ "$rate" = "$top" ]; then sampler_start "$pid" "$WORK/rss-$t.log"; fi
    run_oha "$OUT/$t-$rate.json" "$url" -z "$DURATION" -q "$rate" --latency-correction -c "$RATE_CONNS"
    if [ -n "$pid" ] && [ "$rate" = "$top" ]; then sampler_stop; GMETA[rss_max_rate_mb]=$(max_mb "$WORK/rss-$t.log"); fi
  done
  if [ "$t" = gensetd ]; then GMETA[dropped_after_rates]=$(dropped "$ADMIN"); fi
  say "$t: closed loop, $MAX_CONNS connections, $DURATION"
  run_oha "$OUT/$t-max.json" "$url" -z "$DURATION" -c "$MAX_CONNS"
}

for t in $TARGETS; do
  case $t in
  direct)
    HDRS=(-H "authorization: Bearer $CLIENT_KEY")
    bench_target direct "$UPSTREAM/chat/completions"
    ;;
  nginx-proxy)
    NP_PORT=$(free_port)
    mkdir -p "$WORK/nginx-proxy-tmp"
    sed -e "s#@DIR@#$WORK#g" -e "s#@PORT@#$NP_PORT#g" -e "s#@UPSTREAM_PORT@#$NGX_PORT#g" bench/proxy/nginx-proxy.conf.in >"$WORK/nginx-proxy.conf"
    start_bg nginx-proxy "$NGINX" -c "$WORK/nginx-proxy.conf" -p "$WORK" -e "$WORK/nginx-proxy-error.log"
    if ! wait_http "http://127.0.0.1:$NP_PORT/v1/chat/completions" 10; then warn "nginx-proxy did not start"; stop_bg nginx-proxy; drop_target nginx-proxy; continue; fi
    HDRS=(-H "authorization: Bearer $CLIENT_KEY")
    bench_target nginx-proxy "http://127.0.0.1:$NP_PORT/v1/chat/completions"
    stop_bg nginx-proxy
    ;;
  bare|bare-reqwest)
    # Opt-in references: a pass-through on gensetd's own server and client stack
    # (bench/proxy/bare), and the same through reqwest (what the client costs).
    say "cargo build --release (bench/proxy/bare)"
    if ! (cd bench/proxy/bare && cargo build --release --quiet >&2); then warn "bench/proxy/bare did not build"; drop_target "$t"; continue; fi
    BP=$(free_port)
    client=hyper; [ "$t" = bare-reqwest ] && client=reqwest
    start_bg "$t" env LISTEN="127.0.0.1:$BP" UPSTREAM="http://127.0.0.1:$NGX_PORT" CLIENT=$client "$CARGO_TARGET_DIR/release/genset-bench-bare-proxy"
    if ! wait_http "http://127.0.0.1:$BP/v1/chat/completions" 10; then warn "bare pass-through did not start"; stop_bg "$t"; drop_target "$t"; continue; fi
    HDRS=(-H "authorization: Bearer $CLIENT_KEY")
    bench_target "$t" "http://127.0.0.1:$BP/v1/chat/completions"
    stop_bg "$t"
    ;;
  gensetd)
    GD=$WORK/gensetd; mkdir -p "$GD"
    cat >"$GD/genset.toml" <<EOF
[proxy]
listen = "127.0.0.1:0"
max_body = "8MiB"
[admin]
listen = "127.0.0.1:0"
token_file = "$GD/admin.token"
[store]
url = "sqlite://$GD/genset.db"
[recording]
redact = "$REDACT"
retention = "30d"
[[upstreams]]
name = "nginx"
api = "openai"
base_url = "$UPSTREAM"
EOF
    start_bg gensetd env RUST_LOG=warn "$GENSETD" --config "$GD/genset.toml"
    for _ in $(seq 300); do grep -q 'gensetd ready' "$WORK/gensetd.out" 2>/dev/null && break; kill -0 "${PIDS[gensetd]}" 2>/dev/null || break; sleep 0.1; done
    line=$(grep -m1 'gensetd ready' "$WORK/gensetd.out" || true)
    if [ -z "$line" ]; then warn "gensetd did not get ready: $(tail -n 20 "$WORK/gensetd.err")"; stop_bg gensetd; drop_target gensetd; continue; fi
    PROXY=$(sed -E 's/.*proxy=(http:[^ ]+).*/\1/' <<<"$line"); ADMIN=$(sed -E 's/.*admin=(http:[^ ]+).*/\1/' <<<"$line")
    GPID=${PIDS[gensetd]}
    sleep 1  # settle after start before reading idle RSS (not a correctness wait)
    GMETA[rss_idle_mb]=$(awk '{printf "%.1f", $1/1024}' <<<"$(rss_kb "$GPID")")
    HDRS=(-H "authorization: Bearer $CLIENT_KEY")
    probe=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -H "authorization: Bearer $CLIENT_KEY" -d "$BODY" "$PROXY/v1/chat/completions")
    [ "$probe" = 200 ] || warn "gensetd probe answered $probe"
    bench_target gensetd "$PROXY/v1/chat/completions" "$GPID"
    GMETA[rss_after_max_mb]=$(awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$GPID/status")
    GMETA[dropped_after_max]=$(dropped "$ADMIN")
    ok=$(python3 - "$OUT" <<'PY'
import json, sys, glob
n = 0
for f in glob.glob(sys.argv[1] + "/gensetd-*.json"):
    try:
        d = json.load(open(f))
    except Exception:
        continue
    n += sum(v for k, v in (d.get("statusCodeDistribution") or {}).items() if str(k).startswith("2"))
print(n)
PY
)
    GMETA[requests_sent_ok]="$ok (+ warm-up and probe)"
    stop_bg gensetd   # SIGTERM drains the recorder
    GMETA[rows_recorded]=$(python3 -c "import sqlite3,sys; print(sqlite3.connect('file:$GD/genset.db?mode=ro', uri=True).execute('select count(*) from exchanges').fetchone()[0])" 2>/dev/null || echo n/a)
    GMETA[binary]=$GENSETD
    GMETA[redact]=$REDACT
    ;;
  litellm)
    LP=$(free_port)
    cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: $UPSTREAM
      api_key: $CLIENT_KEY
general_settings:
  master_key: $LITELLM_KEY
litellm_settings:
  drop_params: true
  set_verbose: false
EOF
    start_bg litellm env -u DATABASE_URL LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
      "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LP" --num_workers 1
    if ! wait_http "http://127.0.0.1:$LP/health/liveliness" 180; then warn "LiteLLM did not start: $(tail -n 20 "$WORK/litellm.err")"; stop_bg litellm; drop_target litellm; continue; fi
    HDRS=(-H "authorization: Bearer $LITELLM_KEY")
    bench_target litellm "http://127.0.0.1:$LP/v1/chat/completions"
    stop_bg litellm
    ;;
  portkey)
    PP=$(free_port)
    start_bg portkey node "$PORTKEY_JS" --headless --port="$PP"
    if ! wait_http "http://127.0.0.1:$PP/" 60; then warn "Portkey did not start: $(tail -n 20 "$WORK/portkey.err")"; stop_bg portkey; drop_target portkey; continue; fi
    HDRS=(-H "authorization: Bearer $CLIENT_KEY" -H "x-portkey-provider: openai" -H "x-portkey-custom-host: $UPSTREAM")
    bench_target portkey "http://127.0.0.1:$PP/v1/chat/completions"
    stop_bg portkey
    ;;
  *) warn "unknown target $t" ;;
  esac
done

# --- metadata and the report ----------------------------------------------------------------
gmeta_json=$(for k in "${!GMETA[@]}"; do printf '%s\t%s\n' "$k" "${GMETA[$k]}"; done | python3 -c '
import json, sys
print(json.dumps(dict(l.rstrip("\n").split("\t", 1) for l in sys.stdin if "\t" in l)))')
export TARGETS RATES DURATION MAX_CONNS RATE_CONNS BODY gmeta_json
export V_NGINX=$("$NGINX" -v 2>&1 | sed 's#.*/##')
export V_OHA=$("$OHA" --version 2>/dev/null | head -n1)
export V_LITELLM=$([ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)
export V_PORTKEY=$([ -f "$NODE_DIR/node_modules/@portkey-ai/gateway/package.json" ] && python3 -c "import json; print(json.load(open('$NODE_DIR/node_modules/@portkey-ai/gateway/package.json'))['version'])" || true)
export V_NODE=$(node --version 2>/dev/null || true)
python3 - "$OUT/meta.json" <<'PY'
import json, os, platform, sys, time
e = os.environ
g = json.loads(e["gmeta_json"] or "{}")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
meta = {
    "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    "machine": f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; load average before the run {e.get('LOAD_BEFORE', '?')}",
    "targets": ["direct"] + [t for t in e["TARGETS"].split() if t != "direct"] if "direct" in e["TARGETS"].split() else e["TARGETS"].split(),
    "rates": [int(r) for r in e["RATES"].split()],
    "duration": e["DURATION"],
    "max_conns": int(e["MAX_CONNS"]),
    "nginx_version": e.get("V_NGINX", ""),
    "oha_rate_cmd": f"oha -q RATE --latency-correction -c {e['RATE_CONNS']} -z {e['DURATION']}",
    "oha_max_cmd": f"oha -c {e['MAX_CONNS']} -z {e['DURATION']}",
    "body_bytes": len(e["BODY"]),
    "versions": {k: v for k, v in {
        "oha": e.get("V_OHA"), "litellm": e.get("V_LITELLM") and f"litellm {e['V_LITELLM']}, 1 worker, no database",
        "portkey": e.get("V_PORTKEY") and f"@portkey-ai/gateway {e['V_PORTKEY']} on node {e.get('V_NODE')}",
    }.items() if v},
}
if g:
    meta["gensetd"] = g
json.dump(meta, open(sys.argv[1], "w"), indent=2)
PY
python3 bench/proxy/report.py "$OUT" | tee "$OUT/report.md"
say "raw results in $OUT"
