#!/usr/bin/env bash
# The demo: installs slapd if needed, then starts a private slapd with sample data and the Grafana emulator,
# and runs check-config, plan, sync, a second plan (no changes) and explain, on the embedded SQLite store.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
exec cargo xtask demo "$@"
