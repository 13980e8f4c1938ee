#!/usr/bin/env bash
# Builds docker/Dockerfile with podman and proves the image works: tests/container_image.rs
# runs it as user 10001 on a named /data volume against a real Mosquitto, the Gmail-like
# TLS SMTP server and a Frigate-like server, publishes a Frigate event and checks the mail,
# the volume, the HEALTHCHECK (healthy, then unhealthy after a refused login) and that
# SIGTERM exits 0 with the spool kept. Prints the image's labels and size.
#
#   docker/test-image.sh                 # as root, with podman and runc installed
#
# Where no container registry is reachable, the builder base rust:1-bookworm is made
# locally first (docker/standin-base.sh). Not part of .ci/run: the image build compiles
# the whole dependency tree for musl (about 20 minutes on 2 cores the first time; cached
# after that).
set -euo pipefail
cd "$(dirname "$0")/.."

# This machine's podman needs runc and cgroupfs, and ulimits below podman's default
# nofile (1048576), which a container may not set here. Override for other machines.
PODMAN="${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}"
ULIMITS="${PODMAN_ULIMITS:---ulimit nofile=16384:16384 --ulimit nproc=4096:4096}"
IMAGE="${SNAPMAIL_IMAGE:-localhost/snapmail:test}"
BASE="docker.io/library/rust:1-bookworm"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=aarch64 ;;
  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

if ! $PODMAN image exists "$BASE"; then
  echo "== $BASE is not here: building the local stand-in (docker/standin-base.sh)"
  docker/standin-base.sh "$BASE"
fi

echo "== build $IMAGE (version $version, $arch)"
start=$(date +%s)
log="$(mktemp)"
# shellcheck disable=SC2086
if ! nice -n 10 $PODMAN build --format docker --pull=missing --network host $ULIMITS \
  --ignorefile docker/Dockerfile.dockerignore \
  --build-arg BUILD_ARCH="$arch" --build-arg BUILD_VERSION="$version" \
  -f docker/Dockerfile -t "$IMAGE" . >"$log" 2>&1; then
  tail -n 40 "$log"; echo "the image build failed (log: $log)" >&2; exit 1
fi
grep -E 'STEP|COMMIT|Finished' "$log" || true; rm -f "$log"
echo "== built in $(( $(date +%s) - start )) s"

$PODMAN image inspect "$IMAGE" --format '{{range $k, $v := .Labels}}{{printf "label %s=%s\n" $k $v}}{{end}}' | grep io.hass
$PODMAN image inspect "$IMAGE" --format 'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} cmd={{.Config.Cmd}} healthcheck={{.Config.Healthcheck.Test}}'
size=$($PODMAN image inspect "$IMAGE" --format '{{.Size}}')
echo "== image size: $size bytes ($(( size / 1024 / 1024 )) MiB)"

echo "== run tests/container_image.rs against $IMAGE"
SNAPMAIL_IMAGE="$IMAGE" SNAPMAIL_PODMAN="$PODMAN" SNAPMAIL_PODMAN_RUN="$ULIMITS" \
  nice -n 10 cargo test --test integration -- --ignored --exact \
  container_image::the_image_mails_a_frigate_event_keeps_its_spool_and_reports_health --nocapture 2>&1 \
  | grep -vE '^\s+(Compiling|Checking|Downloaded|Downloading)'
echo "== image size: $size bytes ($(( size / 1024 / 1024 )) MiB)"
