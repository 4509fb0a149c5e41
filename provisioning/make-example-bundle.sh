#!/usr/bin/env bash
# Assemble the example provisioning bundle: provisioning/example-bundle (manifest, licence
# notice) plus the test model, fetched and verified by fetch-test-model.sh.
# Usage: provisioning/make-example-bundle.sh [OUT_DIR] [--tar]
#   OUT_DIR defaults to target/bundles; the bundle is OUT_DIR/genset-example-bundle
#   (and OUT_DIR/genset-example-bundle.tar with --tar). Prints the bundle's path last.
# Install it with: gensetctl provision PATH [--dry-run]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=target/bundles
TAR=0
for a in "$@"; do
  case "$a" in
    --tar) TAR=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) OUT=$a ;;
  esac
done
MODEL=$("$HERE/fetch-test-model.sh" | tail -n 1)
B="$OUT/genset-example-bundle"
rm -rf "$B"
mkdir -p "$B/models" "$B/licences"
cp "$HERE/example-bundle/manifest.toml" "$B/"
cp "$HERE/example-bundle/licences/"* "$B/licences/"
# A hard link when the cache is on the same filesystem, else a copy.
ln "$MODEL" "$B/models/" 2>/dev/null || cp "$MODEL" "$B/models/"
if [ "$TAR" = 1 ]; then
  tar -C "$B" -cf "$B.tar" manifest.toml licences models
  echo "$B.tar"
else
  echo "$B"
fi
