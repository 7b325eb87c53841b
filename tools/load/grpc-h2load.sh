#!/usr/bin/env bash
# Raw HTTP/2 drivers against a running gRPC core (loopback only), for a second opinion next to
# `cargo bench --bench loadgen`. h2load counts HTTP status only: a non-zero grpc-status is NOT
# detected, so run the tonic harness (benches/loadgen) for correctness.
#
#   innerloop serve --dev --grpc-port 50051 &      # or: cargo run --release -- serve --dev
#   tools/load/grpc-h2load.sh [http://127.0.0.1:50051] [requests] [connections] [streams/conn]
#
# Needs h2load: apt-get install -y nghttp2-client.
set -euo pipefail
target=${1:-http://127.0.0.1:50051}
requests=${2:-20000}
conns=${3:-4}
streams=${4:-16}
case "$target" in
  http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
  *) echo "loopback targets only, got $target" >&2; exit 2 ;;
esac
command -v h2load >/dev/null || { echo "h2load missing: apt-get install -y nghttp2-client" >&2; exit 2; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# A gRPC frame is: 1 flag byte (0 = uncompressed), 4-byte big-endian length, the protobuf bytes.
# grpc.health.v1.HealthCheckRequest { service: "innerloop.v1.JobService" } (23 bytes).
printf '\x00\x00\x00\x00\x19\x0a\x17innerloop.v1.JobService' >"$dir/health.bin"
# innerloop.v1.OptimizeRequest { prompt: "Write a haiku about latency" (27 bytes), iterations: 4 }
# (field 17, varint: tag bytes 0x88 0x01).
printf '\x00\x00\x00\x00\x20\x0a\x1bWrite a haiku about latency\x88\x01\x04' >"$dir/create.bin"

run() {
  local name=$1 path=$2 body=$3 n=$4
  echo "== $name: $n requests, $conns connections x $streams streams =="
  h2load -n "$n" -c "$conns" -m "$streams" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    -d "$body" "$target$path" | grep -E '^(finished in|requests:|status codes:|time for request:|req/s)'
}

run "health Check (reference)" /grpc.health.v1.Health/Check "$dir/health.bin" "$requests"
# CreateJob starts a real job per request: keep the count modest.
run "CreateJob (iterations=4)" /innerloop.v1.OptimizerService/CreateJob "$dir/create.bin" $((requests / 10))
