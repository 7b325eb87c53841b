#!/usr/bin/env bash
# Runs the original service's Python client and SSE example, unchanged, against our edge.
#
#   tools/compat/run_python_client.sh [GEPA_DIR [BASE_URL]]
#
# GEPA_DIR: a gepa-next checkout; default: the unchanged copy in tools/compat/vendor/gepa-next.
# BASE_URL: a running edge; when absent, the script starts `innerloop serve --dev` itself
# (INNERLOOP_BIN, default target/debug/innerloop; memory store, free ports) with default
# settings — the default loop's own pacing (DEFAULT_MODE_ITERATION_DELAY_MS=50, as the
# original) keeps a fresh job running long enough to cancel — and stops it afterwards.
# A venv with httpx, pydantic, sseclient and requests from PyPI is kept in VENV.
# Run by the test command (.ci/test.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
gepa_dir="$(cd "${1:-$here/vendor/gepa-next}" && pwd)"
base_url="${2:-}"
venv="${VENV:-$root/target/compat-venv}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check httpx pydantic sseclient requests
fi

server_pid=""
cleanup() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

if [ -z "$base_url" ]; then
  bin="${INNERLOOP_BIN:-$root/target/debug/innerloop}"
  free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  port="${PORT:-$(free_port)}"
  JOB_STORE=memory LOG_LEVEL=warn \
    "$bin" serve --dev --port "$port" --grpc-port "${GRPC_PORT:-$(free_port)}" &
  server_pid=$!
  base_url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if curl -fsS "$base_url/v1/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
fi

PYTHONPATH="$gepa_dir/clients/python:$here/shim" \
  "$venv/bin/python" "$here/drive_python_client.py" "$gepa_dir" "$base_url"
