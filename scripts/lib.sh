# Shared helpers for scripts/demo.sh and scripts/test.sh (sourced, not run).

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# ensure_apt PKG... : install the Debian packages that are missing (apt-get update only then).
# Package installs do not start services (nginx on :80, PostgreSQL's main cluster).
ensure_apt() {
  local missing=() p rc policy_added=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get: install them by hand"
  say "installing system packages: ${missing[*]}"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  rc=$?
  [ -n "$policy_added" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || die "apt-get install ${missing[*]} failed"
}

# ensure_rust : cargo on PATH (rustup stable if there is none).
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if ! command -v cargo >/dev/null 2>&1; then
    say "installing the Rust toolchain (rustup, stable)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2 || die "rustup install failed"
    . "$HOME/.cargo/env"
  fi
}

# ensure_venv DIR MODULES PKG... : a venv at DIR where `import MODULES` works (pip installs PKGs if not).
ensure_venv() {
  local dir=$1 mods=$2; shift 2
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir" >&2 || die "python3 -m venv failed (is python3-venv installed?)"
  fi
  if ! "$dir/bin/python" -c "import $mods" >/dev/null 2>&1; then
    say "installing Python packages into $dir: $*"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2 || die "pip install $* failed"
  fi
}

# fetch_model PIP : prints the test model's path (provisioning/fetch-test-model.sh, idempotent).
fetch_model() {
  PIP=$1 bash provisioning/fetch-test-model.sh | tail -n 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null; }

BUILD_APT=(build-essential pkg-config cmake clang libclang-dev libgomp1 git curl ca-certificates python3 python3-venv python3-pip)
