#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (PostgreSQL when none is
# running, chromium for the browser test, buf from npm, Python venvs for the polyglot client,
# the original's client and schemathesis), then runs the quality gates and every test. The
# README's test command; `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n== %s ==\n' "$*"; }

if [ -x .ci/ensure-postgres.sh ]; then
  step "PostgreSQL"
  .ci/ensure-postgres.sh
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  # tests/ui_browser.rs drives Debian's chromium through chromedriver (no browser download).
  step "chromium + chromium-driver"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --all-targets -- -D warnings

step "buf lint"
tools=target/tools
if [ ! -x "$tools/node_modules/.bin/buf" ]; then
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" @bufbuild/buf@1 >/dev/null
fi
"$tools/node_modules/.bin/buf" lint

step "polyglot: Python client generated from proto/"
cargo build --quiet --bin innerloop
tests/polyglot/run.sh

step "compat: the original's Python client, unchanged (tools/compat)"
tools/compat/run_python_client.sh

step "schemathesis: contract fuzzing of the REST edge (bounded examples and time)"
tests/fuzz/schemathesis.sh

# Last, so its summary closes the output. Benches are not run here (they print ratios on demand).
step "cargo test"
cargo test --no-fail-fast
