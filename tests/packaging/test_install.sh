#!/usr/bin/env bash
# Install the .deb on this machine and use it as an operator would. Needs root, changes the
# system (installs, then purges the genset package; the genset user stays), uses ports
# 8080/8081 (the shipped configuration's). systemd need not be PID 1: gensetd is started as
# the unit's ExecStart would start it, as the genset user, with NOTIFY_SOCKET pointed at a
# test socket that checks READY=1, WATCHDOG=1 and STOPPING=1.
#
# Usage: tests/packaging/test_install.sh [PATH.deb [NEWER.deb]]
#   default: the newest target/packages/genset_*.deb; NEWER.deb, when given, is installed
#   over the first as an upgrade (build one with packaging/build.sh --revision 2).
#   With the test model present ($GENSET_TEST_MODEL or ~/.cache/genset/models), the example
#   bundle is provisioned and a local stream is interrupted by SIGTERM (it must finish).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEB=${1:-$(ls -t target/packages/genset_*.deb 2>/dev/null | head -n 1)}
DEB2=${2:-}
[ "$(id -u)" = 0 ] || { echo "FAIL run as root (it installs a package)"; exit 1; }
[ -n "$DEB" ] && [ -f "$DEB" ] || { echo "FAIL no .deb (run packaging/build.sh)"; exit 1; }
DEB=$(readlink -f "$DEB"); [ -z "$DEB2" ] || DEB2=$(readlink -f "$DEB2")
fail=0
ok() { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; fail=1; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
T=$(mktemp -d); chmod 755 "$T"
PID=""
cleanup() {
  [ -z "$PID" ] || kill -9 "$PID" 2>/dev/null || true
  [ -z "${LISTENER:-}" ] || kill "$LISTENER" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
for port in 8080 8081; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then echo "FAIL port $port is in use"; exit 1; fi
done
if dpkg -s genset >/dev/null 2>&1; then dpkg --purge genset >/dev/null; fi

stat_of() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }
is() { # WHAT EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then ok "$1: $3"; else bad "$1: expected $2, got $3"; fi
}

echo "== install $DEB"
dpkg -i "$DEB" > "$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; bad "dpkg -i"; exit 1; }
ok "dpkg -i"
check "genset is a system user with no login shell" sh -c 'u=$(getent passwd genset) && [ "$(echo "$u" | cut -d: -f3)" -lt 1000 ] && echo "$u" | grep -q nologin'
is "/var/lib/genset" "750 genset:genset" "$(stat_of /var/lib/genset)"
is "/var/lib/genset/models" "750 genset:genset" "$(stat_of /var/lib/genset/models)"
is "/etc/genset/genset.toml" "644 root:root" "$(stat_of /etc/genset/genset.toml)"
is "/etc/genset/admin.token" "600 genset:genset" "$(stat_of /etc/genset/admin.token)"
check "the admin token is not empty" test -s /etc/genset/admin.token
is "/etc/genset/tls/console.key" "640 root:genset" "$(stat_of /etc/genset/tls/console.key)"
is "/etc/genset/tls/console.crt" "644 root:genset" "$(stat_of /etc/genset/tls/console.crt)"
check "the console certificate is valid for a year" openssl x509 -in /etc/genset/tls/console.crt -noout -checkend 31536000
check "the console key matches the certificate" sh -c '[ "$(openssl x509 -in /etc/genset/tls/console.crt -noout -pubkey)" = "$(openssl pkey -in /etc/genset/tls/console.key -pubout)" ]'
is "/etc/genset/credentials" "700 root:root" "$(stat_of /etc/genset/credentials)"
man_opt=--man=no; command -v man >/dev/null && man_opt=--man=yes
check "systemd-analyze verify gensetd.service (installed, $man_opt)" sh -c "out=\$(systemd-analyze verify $man_opt /usr/lib/systemd/system/gensetd.service 2>&1) && [ -z \"\$out\" ]"
check "gensetd check-config passes on the shipped file (as genset)" runuser -u genset -- /usr/bin/gensetd check-config --config /etc/genset/genset.toml
TOKEN0=$(sha256sum /etc/genset/admin.token) CRT0=$(sha256sum /etc/genset/tls/console.crt)

# A stand-in for systemd's notify socket: records every datagram, one per line.
python3 - "$T/notify.sock" "$T/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
import os; os.chmod(sys.argv[1], 0o777)
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        log.write(s.recv(4096).decode().replace("\n", " ") + "\n")
PY
LISTENER=$!
for _ in $(seq 50); do [ -S "$T/notify.sock" ] && break; sleep 0.1; done

start() { # as ExecStart= would: exec'd as the genset user (setpriv, not runuser: runuser
           # stays in between and SIGKILLs its child 2s after a SIGTERM), NOTIFY_SOCKET, WATCHDOG_USEC
  : > "$T/notify.log"
  NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=2000000 \
    setpriv --reuid genset --regid genset --init-groups --inh-caps=-all \
    /usr/bin/gensetd run --config /etc/genset/genset.toml > "$T/gensetd.log" 2>&1 &
  PID=$!
  for _ in $(seq 600); do grep -q 'READY=1' "$T/notify.log" && return 0; kill -0 $PID 2>/dev/null || break; sleep 0.1; done
  cat "$T/gensetd.log"; return 1
}
stop() { # SIGTERM, as systemctl stop does; the exit status must be 0
  kill -TERM "$PID"; local rc=0; wait "$PID" || rc=$?; PID=""; return $rc
}

echo "== run as the unit would"
if start; then ok "READY=1 after start"; else bad "READY=1 never came"; fi
check "GET /healthz on the admin listener (HTTPS, the package's certificate)" curl -sf --cacert /etc/genset/tls/console.crt https://127.0.0.1:8081/healthz
check "the admin listener refuses plain HTTP" sh -c '! curl -sf http://127.0.0.1:8081/healthz'
check "GET /api/v1/status with the admin token" curl -sf --cacert /etc/genset/tls/console.crt -H "Authorization: Bearer $(cat /etc/genset/admin.token)" https://127.0.0.1:8081/api/v1/status
check "gensetctl status (root, token from the config)" gensetctl status
sleep 1.6
if grep -q 'WATCHDOG=1' "$T/notify.log"; then ok "WATCHDOG=1 pings"; else bad "no WATCHDOG=1 within 1.6s (WATCHDOG_USEC=2s)"; fi
if stop; then ok "SIGTERM: exit status 0"; else bad "SIGTERM: non-zero exit"; fi
if grep -q 'STOPPING=1' "$T/notify.log"; then ok "STOPPING=1 on SIGTERM"; else bad "no STOPPING=1"; fi
is "state created by the service" "genset:genset" "$(stat -c %U:%G /var/lib/genset/genset.db 2>/dev/null || echo missing)"

MODEL=${GENSET_TEST_MODEL:-$HOME/.cache/genset/models/gemma-3-270m-q4_k_m.gguf}
if [ -f "$MODEL" ]; then
  echo "== provision the example bundle, then SIGTERM during a local stream"
  B=$(GENSET_TEST_MODEL="$MODEL" provisioning/make-example-bundle.sh "$T/bundles" 2>/dev/null | tail -n 1)
  if gensetctl provision "$B" > "$T/provision.log" 2>&1; then ok "gensetctl provision (example bundle)"; else cat "$T/provision.log"; bad "gensetctl provision"; fi
  check "check-config passes on the provisioned file" runuser -u genset -- /usr/bin/gensetd check-config --config /etc/genset/genset.toml
  check "the backup of the shipped file is kept" cmp /etc/genset/genset.toml.bak "$ROOT/packaging/config/genset.toml"
  is "installed model" "640 genset:genset" "$(stat_of /var/lib/genset/models/a5fd3b62230aa5ec/gemma-3-270m-q4_k_m.gguf)"
  if start; then ok "READY=1 with the local model loaded"; else bad "no READY=1 with the model"; fi
  curl -sN http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' -H 'authorization: Bearer sk-test' \
    -d '{"model":"local/gemma-270m","stream":true,"max_tokens":48,"logit_bias":{"1":-100,"106":-100},"messages":[{"role":"user","content":"Tell me a long story."}]}' \
    > "$T/stream.txt" 2>&1 &
  CURL=$!
  for _ in $(seq 100); do grep -q '^data: {' "$T/stream.txt" 2>/dev/null && break; sleep 0.1; done
  if stop; then ok "SIGTERM during the stream: exit status 0"; else bad "SIGTERM during the stream: non-zero exit"; fi
  wait $CURL || true
  chunks=$(grep -c '^data: {' "$T/stream.txt" || true)
  if tail -n 3 "$T/stream.txt" | grep -q '^data: \[DONE\]'; then
    ok "the stream finished ([DONE] after $chunks chunks)"
  else
    bad "the stream was cut after $chunks chunks: $(tail -c 300 "$T/stream.txt")"
    tail -n 12 "$T/gensetd.log"
  fi
else
  echo "(no test model at $MODEL: provisioning and the stream are not exercised)"
  bad "the test model is missing (provisioning/fetch-test-model.sh)"
fi

echo "== upgrade"
CONF0=$(sha256sum /etc/genset/genset.toml) DB0=$(stat -c %s /var/lib/genset/genset.db)
for d in "$DEB" ${DEB2:+"$DEB2"}; do
  dpkg -i "$d" > "$T/dpkg.log" 2>&1 && ok "dpkg -i $(basename "$d") over the installed one" || { cat "$T/dpkg.log"; bad "dpkg -i $(basename "$d")"; }
  is "genset.toml kept" "$CONF0" "$(sha256sum /etc/genset/genset.toml)"
  is "admin token kept" "$TOKEN0" "$(sha256sum /etc/genset/admin.token)"
  is "console certificate kept" "$CRT0" "$(sha256sum /etc/genset/tls/console.crt)"
  check "the store is kept" test "$(stat -c %s /var/lib/genset/genset.db)" -ge "$DB0"
done
[ -z "$DEB2" ] || is "version after the upgrade" "$(dpkg-deb -f "$DEB2" Version)" "$(dpkg-query -W -f '${Version}' genset)"
if start; then ok "starts again after the upgrade"; stop || bad "stop after the upgrade"; else bad "does not start after the upgrade"; fi

echo "== remove, then purge"
dpkg -r genset > "$T/dpkg.log" 2>&1 && ok "dpkg -r" || { cat "$T/dpkg.log"; bad "dpkg -r"; }
check "remove keeps /etc/genset/genset.toml" test -f /etc/genset/genset.toml
check "remove keeps /var/lib/genset" test -f /var/lib/genset/genset.db
check "remove deletes /usr/bin/gensetd" test ! -e /usr/bin/gensetd
dpkg --purge genset > "$T/dpkg.log" 2>&1 && ok "dpkg --purge" || { cat "$T/dpkg.log"; bad "dpkg --purge"; }
check "purge deletes /var/lib/genset" test ! -e /var/lib/genset
check "purge deletes /etc/genset" test ! -e /etc/genset
exit $fail
