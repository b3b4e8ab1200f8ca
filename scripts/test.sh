#!/usr/bin/env bash
# The whole test suite: installs test dependencies, checks formatting and lints, runs every test (unit,
# data-driven, property, and end-to-end against real slapd and the Grafana emulator), and runs the
# benchmark at small scale so it cannot rot.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$PATH:/usr/sbin"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo xtask bench --scale small
