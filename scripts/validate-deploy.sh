#!/usr/bin/env bash
# Validates the deployment files as far as a machine without a Docker engine
# or a Kubernetes cluster allows, before they are run:
#   - the packages deploy/Dockerfile builds, with `cargo tree`: none depends
#     on the developer tools (momentum-dev) or the test harness;
#   - deploy/nats/secure.conf (with authorization.conf) with `nats-server -t`;
#   - deploy/compose/compose.yaml with `docker-compose config` (Debian's
#     docker-compose, installed with apt-get if missing), against throwaway
#     secrets;
#   - deploy/kubernetes/*.yaml with kubernetes-validate (pinned, from PyPI,
#     into .tools/; it carries the Kubernetes schemas, so it runs offline),
#     strictly: unknown fields are errors.
# The Dockerfile, the compose file and the manifests are also run, with
# podman, by scripts/containers.sh; the Helm values need the NATS chart and
# cannot be checked here.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
kubernetes_validate_version="1.37.0"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The image holds only what operators run: the packages the Dockerfile builds
# must not depend on the developer tools or the test harness.
packages="$(grep -o -- '-p momentum-[a-z]*' deploy/Dockerfile | sed 's/-p //')"
[ -n "$packages" ] || { echo "validate-deploy: no packages found in deploy/Dockerfile" >&2; exit 1; }
for package in $packages; do
  if cargo tree --quiet --edges normal,build --package "$package" --prefix none \
      | grep -E '^momentum-(testkit|dev) ' >/dev/null; then
    echo "validate-deploy: $package, which the image ships, depends on a developer tool or the test harness" >&2
    exit 1
  fi
done
echo "validate-deploy: the image's packages ($(echo $packages | tr '\n' ' ')) hold no developer tool or test harness"

nats_server="$(scripts/ensure-nats-server.sh)"
MOMENTUM_NATS_INGEST_PASSWORD=p1 MOMENTUM_NATS_PROJECTOR_PASSWORD=p2 MOMENTUM_NATS_QUERY_PASSWORD=p3 \
  MOMENTUM_NATS_ADMIN_PASSWORD=p4 "$nats_server" --config deploy/nats/secure.conf -t
# Both NATS configurations offer `sync_interval: always` as a commented line:
# check that each is valid with it switched on.
for config in deploy/nats/secure.conf deploy/local/nats-server.conf; do
  grep -q '^  # sync_interval: always$' "$config" \
    || { echo "validate-deploy: $config does not offer sync_interval: always" >&2; exit 1; }
  synced="$(dirname "$config")/.synced-$(basename "$config")"
  sed 's/^  # sync_interval: always$/  sync_interval: always/' "$config" >"$synced"
  if ! MOMENTUM_NATS_INGEST_PASSWORD=p1 MOMENTUM_NATS_PROJECTOR_PASSWORD=p2 MOMENTUM_NATS_QUERY_PASSWORD=p3 \
      MOMENTUM_NATS_ADMIN_PASSWORD=p4 "$nats_server" --config "$synced" -t; then
    rm -f "$synced"
    echo "validate-deploy: $config is not valid with sync_interval: always" >&2
    exit 1
  fi
  rm -f "$synced"
done

if ! command -v docker-compose >/dev/null 2>&1; then
  echo "validate-deploy: installing docker-compose (Debian) to check the compose file" >&2
  sudo_if_needed=""
  [ "$(id -u)" -eq 0 ] || sudo_if_needed="sudo"
  $sudo_if_needed apt-get update -qq
  $sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
cp -r deploy "$work/deploy"
scripts/make-secrets.sh "$work/deploy/compose/secrets" >/dev/null
(cd "$work/deploy/compose" && docker-compose -f compose.yaml config -q)
echo "deploy/compose/compose.yaml is valid"

venv="$(scripts/python-tool.sh kubernetes-validate "$kubernetes_validate_version")"
resources=(deploy/kubernetes/ingest.yaml deploy/kubernetes/projector.yaml deploy/kubernetes/projector-partitioned.yaml
  deploy/kubernetes/query.yaml)
"$venv/bin/kubernetes-validate" --strict --quiet "${resources[@]}"
echo "deploy/kubernetes: ${#resources[@]} files valid against Kubernetes $kubernetes_validate_version"
