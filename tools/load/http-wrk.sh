#!/usr/bin/env bash
# wrk against a running REST edge (loopback only), next to `cargo bench --bench loadgen`:
# GET /v1/healthz (reference) and GET /v1/optimize/{id} of a finished job. HTTP/1.1 keep-alive.
# An SSE request lasts until its job ends, so wrk measures job duration there, not latency: use
# the loadgen's `http` and `sse` scenarios for streams.
#
#   RATE_LIMIT_PER_MIN=100000000 RATE_LIMIT_BURST=1000000 innerloop serve --dev --port 8000 &
#   (without lifting the limiter, wrk measures 429s)
#   tools/load/http-wrk.sh [http://127.0.0.1:8000] [seconds] [connections] [threads]
#
# Needs wrk and curl: apt-get install -y wrk curl. Without --dev, set TOKEN for Authorization.
set -euo pipefail
base=${1:-http://127.0.0.1:8000}
seconds=${2:-5}
conns=${3:-16}
threads=${4:-2}
case "$base" in
  http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
  *) echo "loopback targets only, got $base" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 2; }
auth=()
[ -n "${TOKEN:-}" ] && auth=(-H "Authorization: Bearer $TOKEN")

job_id=$(curl -fsS "${auth[@]}" -H 'content-type: application/json' \
  -d '{"prompt":"Write a haiku about latency"}' "$base/v1/optimize?iterations=2" |
  sed -n 's/.*"job_id":"\([^"]*\)".*/\1/p')
[ -n "$job_id" ] || { echo "could not create a job" >&2; exit 1; }
# Read the job's SSE stream to its end, so the job is finished before it is read.
curl -fsS -N "${auth[@]}" --max-time 30 "$base/v1/optimize/$job_id/events" >/dev/null

for path in /v1/healthz "/v1/optimize/$job_id"; do
  echo "== GET $path: ${seconds}s, $conns connections, $threads threads =="
  wrk -d "${seconds}s" -c "$conns" -t "$threads" --latency "${auth[@]}" "$base$path" |
    grep -E 'Latency|50%|90%|99%|Requests/sec|requests in|Non-2xx|Socket errors'
done
