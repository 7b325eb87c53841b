#!/usr/bin/env bash
# Property-based contract fuzzing of the REST edge with schemathesis, from the OpenAPI document the
# server serves: every operation, generated valid and invalid inputs, all checks (no 5xx, status
# codes and bodies as documented, ...). Bounded: FUZZ_EXAMPLES per operation (default 20) and
# FUZZ_TIME_S for the whole run (default 240). Installs schemathesis into a throw-away venv under
# target/, starts `innerloop serve` (memory store, auth on with one token) and prints the run's
# summary: the number of test cases and of failures. Exits non-zero on any failure. Used by .ci/test.sh.
# `positive_data_acceptance` (ST202: a schema-valid request answered 422) is left out of the gate:
# some rules depend on the server's state or settings (a model without a price under
# `budget.max_cost`, a component the job does not evolve) and no schema can state them, so that
# check fails on whatever new corner a time-bounded run happens to reach. Run it on demand with
# FUZZ_ALL_CHECKS=1; every ST202 it found so far was fixed in the document or the server.
# One worker: schemathesis's workers are threads, and hypothesis parses lambda sources with
# `ast.parse`, whose recursion-depth bookkeeping CPython 3.11 shares between threads; with two
# workers a run once died of `SystemError: AST constructor recursion depth mismatch` (a tool
# error, no finding; cpython#106905). One thread cannot race.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${FUZZ_DIR:-$root/target/schemathesis}
mkdir -p "$work"
if [ ! -x "$work/venv/bin/st" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
port=$("$work/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
grpc=$("$work/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bin=${INNERLOOP_BIN:-$root/target/debug/innerloop}
token=fuzz-token
JOB_STORE=memory HOST=127.0.0.1 PORT=$port GRPC_HOST=127.0.0.1 GRPC_PORT=$grpc REQUIRE_AUTH=true API_BEARER_TOKENS=$token \
  RATE_LIMIT_PER_MIN=6000000 RATE_LIMIT_BURST=1000000 RUST_LOG=error "$bin" serve >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
# SSE routes stream until their job ends: their schema is a stream, not a JSON document.
# Run from $work: schemathesis keeps its cache (.schemathesis/) in the current directory.
cd "$work"
exclude=(--exclude-checks positive_data_acceptance)
[ -n "${FUZZ_ALL_CHECKS:-}" ] && exclude=()
"$work/venv/bin/st" --config-file "$root/tests/fuzz/schemathesis.toml" run "http://127.0.0.1:$port/v1/openapi.json" \
  --checks all \
  "${exclude[@]}" \
  --header "Authorization: Bearer $token" \
  --max-examples "${FUZZ_EXAMPLES:-20}" \
  --max-time "${FUZZ_TIME_S:-240}" \
  --request-timeout 10 \
  --workers 1 \
  --seed "${FUZZ_SEED:-22}" \
  --exclude-path-regex '/events$' \
  --warnings off \
  --report ndjson --report-dir "$work/report" \
  --no-color 2>&1 | tee "$work/run.log" | tail -n 40
