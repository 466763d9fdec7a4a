#!/usr/bin/env bash
# Runs every test: unit and property tests, and the end-to-end tests against a
# real nats-server (installed into .tools/ first if none is found).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MOMENTUM_NATS_SERVER="$(scripts/ensure-nats-server.sh)"
export MOMENTUM_NATS_SERVER
echo "using $("$MOMENTUM_NATS_SERVER" --version)"
# The end-to-end tests start the projector binary as a child process.
cargo build --workspace --bins
cargo test --workspace "$@"
