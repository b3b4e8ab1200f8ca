#!/usr/bin/env bash
# The whole test suite: installs test dependencies, checks formatting and lints, runs every test (unit,
# data-driven, property, and end-to-end against real slapd and the Grafana emulator), and runs the
# benchmarks at small scale (debug build, reusing the test build) so they cannot rot. The full-scale
# figures in BENCHMARKS.md come from release builds: cargo xtask bench --scale full, cargo xtask bench-daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$PATH:/usr/sbin"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo xtask bench --scale small --debug
cargo xtask bench-daemon --debug --rate 200 --seconds 3 --logins 20 --users 1000
