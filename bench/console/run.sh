#!/usr/bin/env bash
# Console page timings with 10 million recorded exchanges in SQLite (issue 7's target: every
# page under 100 ms of server time). Seeds once into $DB (reused on the next run), folds the
# dashboards' rollup, then times each page. Prints a Markdown table for docs/benchmarks.md.
#
#   bench/console/run.sh [--rows N] [--iterations K] [--days D]
#   DB=/var/tmp/genset-console-bench.db  (default; about 4 GB at 10M rows)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/genset/target}"
DB="${DB:-/var/tmp/genset-console-bench.db}"
PROFILE="${PROFILE:-release}"
flag=()
[ "$PROFILE" = release ] && flag=(--release)
cargo build "${flag[@]}" -p genset-admin-ui --example console_bench
bin="$CARGO_TARGET_DIR/$([ "$PROFILE" = release ] && echo release || echo debug)/examples/console_bench"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
"$bin" --db "$DB" "$@"
