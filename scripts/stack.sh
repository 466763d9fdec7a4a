#!/usr/bin/env bash
# Starts the whole momentum stack on this machine: nats-server with JetStream,
# the ingestion, projection and query services, and a demo dataset posted
# through the real ingestion API. Runs in the foreground; Ctrl-C stops it all.
#
# Data lives in .stack/ (NATS store, projector store, logs; MOMENTUM_STACK_DIR
# moves it) and survives a restart; `scripts/stack.sh --reset` starts from
# empty. Ports can be moved with MOMENTUM_NATS_PORT, MOMENTUM_NATS_HTTP_PORT,
# MOMENTUM_INGEST_PORT, MOMENTUM_QUERY_PORT and MOMENTUM_PROJECTOR_PORT.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "usage: scripts/stack.sh [--reset] [--no-demo]"
}
reset=false
demo=true
for argument in "$@"; do
  case "$argument" in
    --reset) reset=true ;;
    --no-demo) demo=false ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

nats_port="${MOMENTUM_NATS_PORT:-4222}"
nats_http_port="${MOMENTUM_NATS_HTTP_PORT:-8222}"
ingest_port="${MOMENTUM_INGEST_PORT:-8080}"
query_port="${MOMENTUM_QUERY_PORT:-8081}"
projector_port="${MOMENTUM_PROJECTOR_PORT:-8082}"
state="${MOMENTUM_STACK_DIR:-$root/.stack}"
$reset && rm -rf "$state"
mkdir -p "$state/logs"

nats_server="$(scripts/ensure-nats-server.sh)"
echo "building the services (the first build takes a few minutes)..."
cargo build --workspace --bins --quiet
# Where cargo put the binaries: CARGO_TARGET_DIR when it is set (relative to
# the repository, where this script builds), else target/.
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
bin="$target/debug"

pids=()
stopping=false
stop_all() { # stops the services in reverse order of start, each gracefully
  $stopping && return
  stopping=true
  echo
  echo "stopping..."
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

wait_for() { # name url
  for _ in $(seq 1 150); do
    if curl -fsS "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not become ready; see $state/logs/$1.log" >&2
  exit 1
}

"$nats_server" --config deploy/local/nats-server.conf --addr 127.0.0.1 --port "$nats_port" --http_port "$nats_http_port" \
  --jetstream --store_dir "$state/nats" >"$state/logs/nats.log" 2>&1 &
pids+=($!)
wait_for nats "http://127.0.0.1:$nats_http_port/healthz"

export MOMENTUM_NATS_URL="nats://127.0.0.1:$nats_port"

# Secrets of this local stack, made once and kept with its data: three
# tokens (admin, an evaluator of every movement, a partner), the auth file
# with their SHA-256 digests, and the key participant refs are
# pseudonymised with.
secrets="$state/secrets"
scripts/make-secrets.sh "$secrets" >/dev/null
export MOMENTUM_AUTH_FILE="$secrets/auth.toml"
export MOMENTUM_PSEUDONYM_KEY_FILE="$secrets/pseudonym-keys.toml"
admin_token="$(cat "$secrets/admin.token")"
evaluator_token="$(cat "$secrets/evaluator.token")"
partner_token="$(cat "$secrets/partner.token")"
MOMENTUM_HTTP_ADDR="127.0.0.1:$ingest_port" "$bin/momentum-ingest" >"$state/logs/ingest.log" 2>&1 &
pids+=($!)
wait_for ingest "http://127.0.0.1:$ingest_port/readyz"
MOMENTUM_HTTP_ADDR="127.0.0.1:$projector_port" MOMENTUM_DATA_DIR="$state/projector" "$bin/momentum-projector" >"$state/logs/projector.log" 2>&1 &
pids+=($!)
MOMENTUM_HTTP_ADDR="127.0.0.1:$query_port" "$bin/momentum-query" >"$state/logs/query.log" 2>&1 &
pids+=($!)
wait_for query "http://127.0.0.1:$query_port/readyz"

last_seq=0
if $demo; then
  echo "posting the demo dataset through the ingestion API..."
  summary="$(MOMENTUM_TOKEN="$admin_token" "$bin/momentum-dev" demo --ingest-url "http://127.0.0.1:$ingest_port")"
  echo "$summary"
  last_seq="$(echo "$summary" | sed -n 's/.*last stream sequence \([0-9]*\).*/\1/p')"
  # Read with min_seq until the projector has folded every demo event (about
  # 15 s for the demo data on two cores), so the URLs below already show them.
  echo "waiting for the projector to fold the demo data..."
  for attempt in $(seq 1 40); do
    curl -fsS -H "authorization: Bearer $evaluator_token" \
      "http://127.0.0.1:$query_port/v1/status?min_seq=${last_seq:-0}" >/dev/null 2>&1 && break
    if [ "$attempt" = 40 ]; then
      echo "the projector did not fold the demo data in time; see $state/logs/projector.log" >&2
      exit 1
    fi
    sleep 1
  done
fi

cat <<EOT

momentum is running (logs in $state/logs/, Ctrl-C stops everything):
  ingest API   http://127.0.0.1:$ingest_port/v1/events
  dashboard    http://127.0.0.1:$query_port/#token=$evaluator_token
  query API    http://127.0.0.1:$query_port/v1/movements (documents: /docs, /openapi.json)
  projector    http://127.0.0.1:$projector_port/readyz
  NATS         nats://127.0.0.1:$nats_port (monitoring http://127.0.0.1:$nats_http_port)

Tokens of this stack (kept in $secrets/):
  admin      $admin_token
  evaluator  $evaluator_token
  partner    $partner_token   (posts with source urn:partner:me)

Try:
  curl -s -H 'authorization: Bearer $evaluator_token' http://127.0.0.1:$query_port/v1/movements
  curl -s -H 'authorization: Bearer $evaluator_token' \\
    'http://127.0.0.1:$query_port/v1/movements/leeds-walking-groups/trends?interval=week&min_seq=${last_seq:-0}'
  curl -s -X POST http://127.0.0.1:$ingest_port/v1/events -H 'authorization: Bearer $partner_token' \\
    -H 'content-type: application/cloudevents+json' \\
    -d '{"specversion":"1.0","id":"my-first-event","source":"urn:partner:me","type":"volunteer.hours_logged",
         "subject":"leeds-walking-groups","time":"$(date -u +%Y-%m-%dT%H:%M:%SZ)","data":{"participant":"p-1","hours":2}}'
EOT
wait -n "${pids[@]}" || true
echo "a service stopped unexpectedly; see $state/logs/" >&2
exit 1
