#!/usr/bin/env bash
# Run all of genset's tests, from a fresh clone on a fresh Debian 12 machine (as root, or a user
# with sudo). Idempotent: what is already installed is not installed again.
#
#   1. apt packages (only when one is missing: then `apt-get update` + install)
#   2. Python packages for the SDK tests, in a venv under $GENSET_CACHE/test-venv
#   3. the test model (provisioning/fetch-test-model.sh) -> GENSET_TEST_MODEL
#   4. a throwaway PostgreSQL server on loopback, random port -> GENSET_TEST_PG_URL (stopped at exit)
#   5. cargo build --workspace --all-targets
#   6. cargo nextest run --workspace --no-fail-fast
#   7. python -m pytest tests/sdk   (the real gensetd and genset-sim, driven by the openai and anthropic SDKs)
#   8. packaging checks (.deb and .rpm built, inspected, installed, upgraded, purged)
#   9. lints: cargo fmt --check and cargo clippy --all-targets -D warnings (where rustfmt and
#      clippy are installed)
# Runs every suite even when an earlier one fails, then exits non-zero if any failed.
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/genset/target), GENSET_CACHE (default ~/.cache/genset),
# GENSET_TEST_ONLY=rust|sdk|packaging|lint to run one suite, PYTEST_ADDOPTS for extra pytest arguments,
# GENSET_TEST_PG_URL to use an existing server instead of starting one.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export GENSET_CACHE=${GENSET_CACHE:-$HOME/.cache/genset}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$GENSET_CACHE/target}
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$GENSET_CACHE"

. scripts/lib.sh

# ---------------------------------------------------------------------------------------------
say "system packages"
ensure_apt "${BUILD_APT[@]}" postgresql nginx-light systemd chromium chromium-driver fonts-dejavu-core poppler-utils

say "Rust toolchain"
ensure_rust
cargo --version >&2
NEXTEST=1
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install --locked cargo-nextest >&2 || { echo "warning: cargo-nextest unavailable, falling back to cargo test" >&2; NEXTEST=0; }
fi

say "Python packages"
VENV=$GENSET_CACHE/test-venv
ensure_venv "$VENV" "openai, anthropic, pytest, pytest_timeout, httpx, psycopg" \
  openai anthropic pytest pytest-timeout httpx "psycopg[binary]"
PY=$VENV/bin/python

say "test model"
GENSET_TEST_MODEL=$(fetch_model "$VENV/bin/pip") && [ -f "$GENSET_TEST_MODEL" ] || die "fetching the test model failed"
export GENSET_TEST_MODEL
echo "GENSET_TEST_MODEL=$GENSET_TEST_MODEL" >&2

# ---------------------------------------------------------------------------------------------
PG_DIR=""
cleanup() {
  if [ -n "$PG_DIR" ] && [ -d "$PG_DIR" ]; then
    $PG_RUN "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${GENSET_TEST_PG_URL:-}" ]; then
  say "throwaway PostgreSQL"
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  PG_DIR=$(mktemp -d /tmp/genset-pg.XXXXXX)
  PG_RUN=""
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$PG_DIR"   # initdb refuses to run as root
    PG_RUN="runuser -u postgres --"
  fi
  PG_PW=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$PG_PW" > "$PG_DIR/pw"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DIR/pw"
  chmod 600 "$PG_DIR/pw"
  $PG_RUN "$PG_BIN/initdb" -D "$PG_DIR/data" -U genset --pwfile="$PG_DIR/pw" -A scram-sha-256 -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
  started=""
  for _ in 1 2 3 4 5; do
    PG_PORT=$(free_port)
    if $PG_RUN "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
         -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
         start >/dev/null 2>&1; then
      started=1; break
    fi
  done
  [ -n "$started" ] || { cat "$PG_DIR/server.log" >&2; die "could not start PostgreSQL"; }
  export GENSET_TEST_PG_URL="postgres://genset:$PG_PW@127.0.0.1:$PG_PORT/postgres"
  echo "PostgreSQL on 127.0.0.1:$PG_PORT (data in $PG_DIR)" >&2
fi

# ---------------------------------------------------------------------------------------------
# The build cache outlives clones, and its incremental state grows with every build (27 GB
# after a week of sessions, when the disk filled up and the packaging checks failed). Below
# 10 GiB free it is dropped: a cache only, the next build is slower, not different.
mkdir -p "$CARGO_TARGET_DIR"
free_kib=$(df -Pk "$CARGO_TARGET_DIR" | awk 'NR == 2 {print $4}')
if [ -n "$free_kib" ] && [ "$free_kib" -lt $((10 * 1024 * 1024)) ] && [ -d "$CARGO_TARGET_DIR/debug/incremental" ]; then
  say "only $((free_kib / 1024)) MiB free on the build cache's disk: removing $CARGO_TARGET_DIR/debug/incremental"
  rm -rf "$CARGO_TARGET_DIR/debug/incremental"
fi

say "cargo build --workspace --all-targets  (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
if ! cargo build --workspace --all-targets; then
  die "the build failed"
fi

# GENSET_TEST_ONLY=rust|sdk|packaging|lint runs that suite alone.
only() { [ -z "${GENSET_TEST_ONLY:-}" ] || [ "$GENSET_TEST_ONLY" = "$1" ]; }
rust_rc=skipped
sdk_rc=skipped
pkg_rc=skipped
if only rust; then
  say "Rust tests"
  if [ $NEXTEST = 1 ]; then
    cargo nextest run --workspace --no-fail-fast --no-tests=warn; rust_rc=$?
  else
    cargo test --workspace --no-fail-fast; rust_rc=$?
  fi
fi
if only sdk; then
  say "SDK integration tests (tests/sdk)"
  GENSET_BIN_DIR=${GENSET_BIN_DIR:-$CARGO_TARGET_DIR/debug} "$PY" -m pytest tests/sdk -q; sdk_rc=$?
fi

if only packaging; then
  say "packaging: unit checks, .deb and .rpm built, inspected, installed, upgraded, purged"
  ensure_apt rpm openssl
  PKG1=$(mktemp -d /tmp/genset-pkg1.XXXXXX); PKG2=$(mktemp -d /tmp/genset-pkg2.XXXXXX)
  pkg_rc=0
  bash tests/packaging/test_unit.sh || pkg_rc=1
  if bash packaging/build.sh --out "$PKG1" && bash packaging/build.sh --deb --revision 2 --out "$PKG2"; then
    DEB1=$(ls "$PKG1"/*.deb | head -n 1); RPM1=$(ls "$PKG1"/*.rpm | head -n 1); DEB2=$(ls "$PKG2"/*.deb | head -n 1)
    bash tests/packaging/test_deb.sh "$DEB1" || pkg_rc=1
    bash tests/packaging/test_rpm.sh "$RPM1" || pkg_rc=1
    if [ "$(id -u)" = 0 ]; then
      bash tests/packaging/test_install.sh "$DEB1" "$DEB2" || pkg_rc=1
    else
      sudo bash tests/packaging/test_install.sh "$DEB1" "$DEB2" || pkg_rc=1
    fi
  else
    echo "FAIL packaging/build.sh" >&2; pkg_rc=1
  fi
  rm -rf "$PKG1" "$PKG2"
fi

lint_rc=skipped
if only lint; then
  say "lints: rustfmt and clippy"
  if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then
    lint_rc=0
    cargo fmt --all -- --check >&2 || { echo "FAIL cargo fmt --check (run: cargo fmt --all)" >&2; lint_rc=1; }
    cargo clippy --workspace --all-targets -- -D warnings >&2 || { echo "FAIL cargo clippy" >&2; lint_rc=1; }
  else
    echo "warning: rustfmt or clippy is not installed; lints skipped" >&2
  fi
fi

say "summary: rust tests: $rust_rc, SDK tests: $sdk_rc, packaging checks: $pkg_rc, lints: $lint_rc  (0 = passed)"
for rc in "$rust_rc" "$sdk_rc" "$pkg_rc" "$lint_rc"; do
  if [ "$rc" != skipped ] && [ "$rc" != 0 ]; then exit 1; fi
done
exit 0
