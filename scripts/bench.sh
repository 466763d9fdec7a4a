#!/usr/bin/env bash
# Runs the benchmark (`momentum-dev bench`) on a release build: every stage of
# momentum measured beside the raw ceiling of the same nats-server, in one
# run. It installs the pinned nats-server and DuckDB (for the peer stage)
# if needed and builds the release binaries first. Arguments go to
# `momentum-dev bench` (see `--help`); the
# default is the full run (a million events, five to ten minutes on 2 cores),
# `--smoke` a few seconds' check that every stage works.
#
#   scripts/bench.sh                   # full run, report in target/bench/report.json
#   scripts/bench.sh --events 100000   # a shorter run
#   scripts/bench.sh --mix large       # six movements holding every event
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MOMENTUM_NATS_SERVER="$(scripts/ensure-nats-server.sh)"
export MOMENTUM_NATS_SERVER
# The peer stage's DuckDB (pinned in the script; into .tools/).
MOMENTUM_BENCH_PYTHON="$(scripts/ensure-duckdb.sh)"
export MOMENTUM_BENCH_PYTHON
cargo build --release --bins --quiet
exec "${CARGO_TARGET_DIR:-target}/release/momentum-dev" bench "$@"
