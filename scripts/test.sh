#!/usr/bin/env bash
# The whole test suite: install what it needs, check formatting and lints,
# run every test (unit, property, behaviour, end to end with real clients).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

# CI clones afresh each run; keep the build cache outside the checkout.
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="${HOME}/.cache/fogg-target"
    # Incremental state for a fresh clone is never reused and grew the
    # shared cache by gigabytes per run.
    export CARGO_INCREMENTAL=0
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Property tests: enough cases to mean something, bounded for CI time.
export PROPTEST_CASES="${PROPTEST_CASES:-512}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked
