#!/usr/bin/env bash
# Makes the secrets of a momentum deployment in the folder given (once: an
# existing auth.toml is left alone), and prints the tokens:
#   - admin, evaluator (all movements) and partner (source urn:partner:me)
#     tokens, and auth.toml holding only their SHA-256 digests;
#   - pseudonym-keys.toml, the key participant refs are pseudonymised with;
#   - a NATS password per service and nats.env, which hands them to
#     nats-server for deploy/nats/secure.conf.
# scripts/stack.sh uses it for .stack/secrets; the compose deployment for
# deploy/compose/secrets.
#
# usage: scripts/make-secrets.sh <folder>
set -euo pipefail
folder="${1:?usage: scripts/make-secrets.sh <folder>}"
random_hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
if [ ! -f "$folder/auth.toml" ]; then
  mkdir -p "$folder"
  chmod 700 "$folder"
  for role in admin evaluator partner; do random_hex >"$folder/$role.token"; done
  digest() { printf '%s' "$(cat "$folder/$1.token")" | sha256sum | cut -d' ' -f1; }
  cat >"$folder/auth.toml" <<EOT
[[token]]
name = "admin"
sha256 = "$(digest admin)"
role = "admin"

[[token]]
name = "evaluator"
sha256 = "$(digest evaluator)"
role = "evaluator"
movements = ["*"]

[[token]]
name = "partner"
sha256 = "$(digest partner)"
role = "partner"
source = "urn:partner:me"
movements = ["*"]
EOT
  printf 'current = 1\n\n[[key]]\nversion = 1\nsecret = "%s"\n' "$(random_hex)" >"$folder/pseudonym-keys.toml"
  : >"$folder/nats.env"
  for user in ingest projector query admin; do
    # A leading letter keeps nats-server from reading the value as a number.
    password="p$(random_hex)"
    printf '%s' "$password" >"$folder/nats-$user-password"
    echo "MOMENTUM_NATS_$(echo "$user" | tr a-z A-Z)_PASSWORD=$password" >>"$folder/nats.env"
  done
  # The folder keeps other users out. The files themselves are readable by
  # all: Compose mounts file secrets with their host owner and mode, and the
  # containers run as uid 65532, which could not read a 0600 file of yours.
  chmod 644 "$folder"/*
fi
for role in admin evaluator partner; do
  printf '%-10s %s\n' "$role" "$(cat "$folder/$role.token")"
done
