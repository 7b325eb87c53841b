#!/usr/bin/env bash
# Runs the original service's Python client and SSE example, unchanged, against our edge.
#
#   tools/compat/run_python_client.sh GEPA_DIR [BASE_URL]
#
# GEPA_DIR: a gepa-next checkout, e.g.
#   git -C /work/.mirror/iamtonymayse+gepa-next/repo archive HEAD | tar -x -C /tmp/gepa-next
# BASE_URL: a running edge; when absent, the script starts `innerloop serve --dev` itself
# (INNERLOOP_BIN, default target/debug/innerloop; HOST 127.0.0.1, PORT 8000, GRPC_PORT 50051)
# with the offline LocalEcho judge slowed by LOCAL_ECHO_LATENCY_MS so that jobs last long enough
# to cancel, and stops it afterwards.
# A venv with httpx, pydantic, sseclient and requests from PyPI is kept in VENV.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
gepa_dir="$(cd "${1:?usage: $0 GEPA_DIR [BASE_URL]}" && pwd)"
base_url="${2:-}"
venv="${VENV:-${TMPDIR:-/tmp}/innerloop-compat-venv}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet httpx pydantic sseclient requests
fi

server_pid=""
cleanup() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

if [ -z "$base_url" ]; then
  bin="${INNERLOOP_BIN:-$root/target/debug/innerloop}"
  port="${PORT:-8000}"
  USE_JUDGE_STUB=false JUDGE_PROVIDER=local_echo \
    LOCAL_ECHO_LATENCY_MS="${LOCAL_ECHO_LATENCY_MS:-150}" LOG_LEVEL=warn \
    "$bin" serve --dev --port "$port" --grpc-port "${GRPC_PORT:-50051}" &
  server_pid=$!
  base_url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if curl -fsS "$base_url/v1/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
fi

PYTHONPATH="$gepa_dir/clients/python:$here/shim" \
  "$venv/bin/python" "$here/drive_python_client.py" "$gepa_dir" "$base_url"
