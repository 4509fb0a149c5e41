#!/usr/bin/env bash
# CPU per proxied request: one process's user + system time (all its threads, from
# /proc/PID/stat) over a fixed number of requests, divided by that number. Steadier than
# requests per second on a shared machine: a neighbour's load slows the loop, not the work.
#
#   bench/proxy/cpu.sh PID URL [REQUESTS=60000] [CONNECTIONS=32]
#
# Sends the proxy benchmark's chat completion (request.json) with `oha -n REQUESTS -c CONNECTIONS` and prints
# the achieved rate and microseconds of CPU per request. Run targets in turns, several rounds.
set -euo pipefail
pid=$1; url=$2; n=${3:-60000}; c=${4:-32}
body=$(cat "$(dirname "$0")/request.json") # the proxy benchmark's request
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks "$pid")
rps=$(oha --no-tui --output-format json -n "$n" -c "$c" -m POST -H 'content-type: application/json' \
  -H 'authorization: Bearer sk-bench-client-0123456789abcdef' -d "$body" "$url" |
  python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print("%.0f req/s, %.1f%% ok" % (s["requestsPerSec"], 100 * s["successRate"]))')
sleep 0.5 # the recorder's last batch
t1=$(ticks "$pid")
echo "$rps, $(( (t1 - t0) * 1000000 / hz / n )) us CPU per request"
