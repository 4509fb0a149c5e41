#!/usr/bin/env bash
# Build genset's Debian and RPM packages into target/packages/ (one command; docs/packaging.md).
#
#   packaging/build.sh                # genset_<version>-1_amd64.deb and genset-<version>-1.x86_64.rpm
#   packaging/build.sh --revision 2   # the same version, package revision 2 (upgrade tests)
#   packaging/build.sh --gpu          # genset-cuda: llama.cpp with CUDA (needs the CUDA toolkit, nvcc)
#   packaging/build.sh --deb | --rpm  # only one of the two
#   packaging/build.sh --out DIR      # somewhere else than target/packages
#
# Steps: a release build of gensetd and gensetctl (`cargo build --release -p genset-cmd`), then
# the generated assets in $CARGO_TARGET_DIR/release/genset-assets (man pages and bash/zsh/fish completions
# from gensetctl's clap definitions, gensetd.8, the docs, a third-party licence list), then
# cargo-deb and cargo-generate-rpm (installed with `cargo install --locked` when missing).
# Environment: CARGO_TARGET_DIR (default ~/.cache/genset/target).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/genset/target}
OUT=$ROOT/target/packages
GPU=0 REVISION=1 DEB=1 RPM=1
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) GPU=1 ;;
    --revision) REVISION=$2; shift ;;
    --deb) RPM=0 ;;
    --rpm) DEB=0 ;;
    --out) OUT=$(mkdir -p "$2" && cd "$2" && pwd); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
say() { printf '\n==> %s\n' "$*" >&2; }

say "packaging tools"
[ "$DEB" = 0 ] || cargo deb --version >/dev/null 2>&1 || cargo install --locked cargo-deb@3.8.0
[ "$RPM" = 0 ] || cargo generate-rpm --version >/dev/null 2>&1 || cargo install --locked cargo-generate-rpm@0.21.0

FEATURES=() VARIANT=()
if [ "$GPU" = 1 ]; then
  command -v nvcc >/dev/null || { echo "build.sh: --gpu needs the CUDA toolkit (nvcc not found)" >&2; exit 1; }
  FEATURES=(--features genset-engine/cuda)
  VARIANT=(--variant cuda)
fi

say "release build (cargo build --release -p genset-cmd ${FEATURES[*]})"
cargo build --release --locked -p genset-cmd "${FEATURES[@]}"
BIN=$CARGO_TARGET_DIR/release

say "generated assets"
A=$BIN/genset-assets   # `target/release/genset-assets` in the package metadata
rm -rf "$A"
mkdir -p "$A/man/man1" "$A/man/man8" "$A/completions" "$A/doc"
"$BIN/gensetctl" man --out "$A/man/man1" >/dev/null
gzip -9n "$A"/man/man1/*.1
gzip -9n < packaging/man/gensetd.8 > "$A/man/man8/gensetd.8.gz"
for sh in bash zsh fish; do
  "$BIN/gensetctl" completions "$sh" --out "$A/completions" >/dev/null
done
cp README.md docs/*.md "$A/doc/"
if [ -f LICENSE ]; then cp LICENSE "$A/doc/"; fi
# Every crate linked into the binaries, with its licence (llama.cpp comes in llama-cpp-sys-2).
{
  echo "Third-party software linked into gensetd and gensetctl: crate version | licence | source."
  echo
  cargo tree -p genset-cmd "${FEATURES[@]}" -e normal --prefix none --no-dedupe -f '{p} | {l} | {r}' \
    | grep -v '(proc-macro)' | grep -v '^genset' | sed 's/ (\*)$//' | sort -u
} > "$A/doc/third-party-licenses.txt"
ls -R "$A" | sed 's/^/  /' >&2

mkdir -p "$OUT"
if [ "$DEB" = 1 ]; then
  say "Debian package"
  cargo deb -p genset-cmd --no-build --locked --deb-revision "$REVISION" "${VARIANT[@]}" -o "$OUT/"
fi
if [ "$RPM" = 1 ]; then
  say "RPM package"
  cargo generate-rpm -p daemon/cmd -s "release = \"$REVISION\"" "${VARIANT[@]}" -o "$OUT/"
fi
say "packages in $OUT"
ls -l "$OUT"/*.deb "$OUT"/*.rpm 2>/dev/null || true
