#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine, installing what the tests need first.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> formatting and lints"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

echo "==> tests"
cargo test --locked --all-targets
