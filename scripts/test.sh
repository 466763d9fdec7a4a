#!/usr/bin/env bash
# Runs every test: unit and property tests, the end-to-end tests against a
# real nats-server (installed into .tools/ first if none is found), then the
# container tests (scripts/containers.sh). Extra arguments go to `cargo test`,
# e.g. `scripts/test.sh -- kill`, and skip the container step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
MOMENTUM_NATS_SERVER="$(scripts/ensure-nats-server.sh)"
export MOMENTUM_NATS_SERVER
echo "using $("$MOMENTUM_NATS_SERVER" --version)"
# tests/api_fuzz.rs runs schemathesis (pinned in the script; into .tools/).
scripts/api-fuzz.sh --install
# tests/exports.rs and tests/events_export.rs read the CSV and Parquet exports with pandas and pyarrow
# (pinned in the script; into .tools/).
scripts/ensure-pandas.sh >/dev/null
# tests/open_data.rs validates the open-data package with frictionless (pinned in the script; into .tools/).
scripts/ensure-frictionless.sh >/dev/null
# tests/bench.rs runs the bench's smoke mode, whose peer stage is DuckDB (pinned; into .tools/).
MOMENTUM_BENCH_PYTHON="$(scripts/ensure-duckdb.sh)"
export MOMENTUM_BENCH_PYTHON
# tests/dashboard.rs drives Debian's Chromium with playwright-core (pinned in tests/browser).
if [ -z "${MOMENTUM_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.installed-lock.json; then
  npm ci --prefix tests/browser --no-audit --no-fund
  cp tests/browser/package-lock.json tests/browser/node_modules/.installed-lock.json
fi
# tests/operations.rs checks the alert rules with promtool (Debian's prometheus package).
if ! command -v promtool >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
# The deployment files: NATS configuration, compose file, Kubernetes manifests.
scripts/validate-deploy.sh
# The end-to-end tests start the projector binary as a child process.
cargo build --workspace --bins
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
# The container tests (tests/containers.rs), a step of their own with its own
# time bound: the images are made and built first (podman, debootstrap and
# podman-compose installed when missing; about 10 minutes from a clean clone,
# most of it the release build), then the compose cluster and kube play run.
# Skipped when arguments select other tests, and, with a warning, when not
# root (CI runs as root).
if [ "$#" -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
  timeout --kill-after=30s 30m scripts/containers.sh test 2>&1 | tee -a "$log"
elif [ "$#" -eq 0 ]; then
  echo "WARNING: the container tests did NOT run: they need root (podman rootful, debootstrap)." >&2
  echo "WARNING: run 'sudo scripts/containers.sh test', as CI does." >&2
fi
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' \
  "$log" | sed 's/;//g'
