#!/usr/bin/env bash
# Generates Python stubs from proto/ with grpcio-tools (into a throw-away venv) and runs
# python_client.py against a freshly started `innerloop serve`. Used by the test command.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${POLYGLOT_DIR:-$root/target/polyglot}
mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet --disable-pip-version-check grpcio-tools
fi
rm -rf "$work/gen" && mkdir -p "$work/gen"
"$work/venv/bin/python" -m grpc_tools.protoc -I "$root/proto" --python_out="$work/gen" --grpc_python_out="$work/gen" \
  "$root"/proto/innerloop/v1/*.proto
touch "$work/gen/innerloop/__init__.py" "$work/gen/innerloop/v1/__init__.py"
port=$("$work/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bin=${INNERLOOP_BIN:-$root/target/debug/innerloop}
JOB_STORE=memory GRPC_PORT=$port PORT=0 LOG_LEVEL=warn "$bin" serve --dev &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
"$work/venv/bin/python" "$root/tests/polyglot/python_client.py" "127.0.0.1:$port" "$work/gen"
