#!/usr/bin/env bash
# Fuzzes a running momentum service from its own OpenAPI document with
# schemathesis (pinned below, installed into .tools/ on first use): every
# operation gets schema-valid and schema-invalid requests, and every answer
# must be documented (status, content type, headers, body schema), no 5xx.
#
#   scripts/api-fuzz.sh --install      only install schemathesis (scripts/test.sh does this)
#   MOMENTUM_FUZZ_TOKEN=<token> scripts/api-fuzz.sh http://127.0.0.1:8080/openapi.json [schemathesis run options]
#
# The token (an admin's, to reach every answer) is sent only to operations
# that need one. MOMENTUM_FUZZ_MAX_EXAMPLES (default 100) bounds the cases per
# operation and phase; MOMENTUM_FUZZ_SEED (default 1) makes runs repeatable;
# MOMENTUM_FUZZ_MIN_SEQ_MAX (default 0) is a stream sequence already applied,
# the most `min_seq` the fuzzer asks for. Settings and the reasons for them:
# scripts/schemathesis.toml and scripts/schemathesis_hooks.py.
set -euo pipefail
version="4.32.5"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/python-tool.sh" schemathesis "$version")"
schemathesis="$venv/bin/schemathesis"
if [ "${1:-}" = "--install" ]; then
  exit 0
fi
if [ $# -lt 1 ]; then
  echo "usage: MOMENTUM_FUZZ_TOKEN=<token> $0 <url of openapi.json> [schemathesis run options]" >&2
  exit 2
fi
: "${MOMENTUM_FUZZ_TOKEN:?set MOMENTUM_FUZZ_TOKEN to a token of the service (an admin token reaches every answer)}"
export MOMENTUM_FUZZ_TOKEN
export SCHEMATHESIS_HOOKS="$root/scripts/schemathesis_hooks.py"
location="$1"
shift
# schemathesis and hypothesis keep caches in the working directory.
mkdir -p "$root/target/api-fuzz"
cd "$root/target/api-fuzz"
exec "$schemathesis" --config-file "$root/scripts/schemathesis.toml" run "$location" \
  --checks all \
  --max-examples "${MOMENTUM_FUZZ_MAX_EXAMPLES:-100}" \
  --seed "${MOMENTUM_FUZZ_SEED:-1}" \
  --generation-database none \
  --no-color \
  "$@"
