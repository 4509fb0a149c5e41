# Sourced by the bench scripts (after `say` is defined, from the repository root).
# wait_for_quiet: wait, up to BENCH_LOAD_WAIT seconds (default 600), until the 1-minute load
# average is below BENCH_MAX_LOAD (default 1.5), so that a build that has just finished does
# not run into the measurement. Sets LOAD_BEFORE ("1 5 15" min) and LOAD_WAITED (seconds).
wait_for_quiet() {
  local max=${BENCH_MAX_LOAD:-1.5} limit=${BENCH_LOAD_WAIT:-600}
  LOAD_WAITED=0
  while awk -v m="$max" '{exit !($1 >= m)}' /proc/loadavg && [ "$LOAD_WAITED" -lt "$limit" ]; do
    if [ $((LOAD_WAITED % 60)) = 0 ]; then
      say "load average $(cut -d' ' -f1-3 /proc/loadavg) >= $max; waiting (up to ${limit}s)"
    fi
    sleep 10
    LOAD_WAITED=$((LOAD_WAITED + 10))
  done
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
}
