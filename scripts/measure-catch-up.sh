#!/usr/bin/env bash
# Measures how fast the projector folds the stream: posts the demo dataset of
# N years (about 13 000 events a year; six movements) through the ingestion
# API into a fresh nats-server, then times a projector with an empty store
# from start until it answers queries (it answers only once caught up).
# Prints events, seconds and events per second.
#
# usage: scripts/measure-catch-up.sh [years] [profile]   (defaults: 3 release)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
years="${1:-3}"
profile="${2:-release}"
nats_server="$(scripts/ensure-nats-server.sh)"
if [ "$profile" = release ]; then cargo build --release --workspace --bins --quiet; else cargo build --workspace --bins --quiet; fi
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/$profile"
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
"$nats_server" --addr 127.0.0.1 --port "$port" --jetstream --store_dir "$work/nats" >/dev/null 2>&1 &
pids+=($!)
export MOMENTUM_NATS_URL="nats://127.0.0.1:$port"
# A throwaway stack on loopback: no tokens, a throwaway pseudonym key.
export MOMENTUM_AUTH=off
printf 'current = 1\n[[key]]\nversion = 1\nsecret = "%s"\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$work/keys.toml"
export MOMENTUM_PSEUDONYM_KEY_FILE="$work/keys.toml"
sleep 0.5
MOMENTUM_HTTP_ADDR="127.0.0.1:$((port + 1))" RUST_LOG=warn "$bin/momentum-ingest" &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$((port + 1))/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
started=$(date +%s.%N)
summary="$("$bin/momentum-dev" demo --ingest-url "http://127.0.0.1:$((port + 1))" --years "$years" 2>/dev/null)"
posted=$(date +%s.%N)
events="$(echo "$summary" | sed -n 's/.*last stream sequence \([0-9]*\).*/\1/p')"
MOMENTUM_HTTP_ADDR="127.0.0.1:$((port + 2))" RUST_LOG=warn "$bin/momentum-query" &
pids+=($!)
begin=$(date +%s.%N)
MOMENTUM_HTTP_ADDR="127.0.0.1:0" MOMENTUM_DATA_DIR="$work/projector" RUST_LOG=warn "$bin/momentum-projector" &
pids+=($!)
until curl -fsS "http://127.0.0.1:$((port + 2))/v1/status?min_seq=$events" >/dev/null 2>&1; do sleep 0.05; done
end=$(date +%s.%N)
python3 - "$events" "$started" "$posted" "$begin" "$end" "$profile" <<'PY'
import sys
events, started, posted, begin, end = int(sys.argv[1]), *map(float, sys.argv[2:6])
print(f"profile {sys.argv[6]}: {events} events")
print(f"ingest (batches of 500, one client): {posted - started:.2f} s, {events / (posted - started):,.0f} events/s")
print(f"projector catch-up from sequence 1:  {end - begin:.2f} s, {events / (end - begin):,.0f} events/s")
PY
