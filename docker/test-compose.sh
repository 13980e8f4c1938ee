#!/usr/bin/env bash
# Brings docker/docker-compose.yml up with podman-compose, with local stand-ins for the
# Mosquitto and Frigate images (docker/standins/) and the test harness of
# docker/standins/compose.test.yml, publishes a Frigate event into the Compose Mosquitto and
# passes when the Gmail-like SMTP test server received snapmail's mail with the snapshot.
# snapmail runs from the image docker/test-image.sh built, with the mounted config file and
# the app password from the Compose secret file.
#
#   docker/test-image.sh && docker/test-compose.sh          # as root
#
# Needs podman-compose 1.1 or newer (for `network_mode: service:`); Debian bookworm's 1.0.3
# is too old: python3 -m venv /opt/podman-compose && /opt/podman-compose/bin/pip install
# podman-compose, then PODMAN_COMPOSE=/opt/podman-compose/bin/podman-compose.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

PODMAN_GLOBAL="${PODMAN_GLOBAL:---runtime runc --cgroup-manager=cgroupfs}"
PODMAN="podman $PODMAN_GLOBAL"
COMPOSE="${PODMAN_COMPOSE:-podman-compose}"
IMAGE="${SNAPMAIL_IMAGE:-localhost/snapmail:test}"
project=snapmail-compose-test

$PODMAN image exists "$IMAGE" || { echo "no $IMAGE: run docker/test-image.sh first" >&2; exit 1; }
# The Compose file names the image snapmail:latest.
$PODMAN tag "$IMAGE" localhost/snapmail:latest
for img in docker.io/library/eclipse-mosquitto:2 ghcr.io/blakeblackshear/frigate:stable \
  localhost/snapmail-standin:bookworm; do
  $PODMAN image exists "$img" || docker/standins/standin-images.sh
done

echo "== build the SMTP test server (tests/container_image.rs)"
bin="$(nice -n 10 cargo test --test integration --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "integration" and m.get("executable"):
        print(m["executable"])')"
echo "$bin"

work="$(mktemp -d)"
compose() { (cd "$work" && $COMPOSE --podman-args="$PODMAN_GLOBAL" --in-pod false -p "$project" \
  -f docker-compose.yml -f compose.test.yml "$@"); }
cleanup() {
  [ -n "${KEEP:-}" ] && { echo "kept: $work"; return; }
  compose down -v -t 5 >/dev/null 2>&1 || true; rm -rf "$work"
}
trap cleanup EXIT

# The project as a user lays it out: the Compose file and mosquitto.conf, the app password
# in secrets/, the config file from examples/frigate.yaml with the account filled in.
cp docker/docker-compose.yml docker/mosquitto.conf docker/standins/compose.test.yml "$work/"
mkdir -p "$work/secrets" "$work/shared" "$work/frigate/config" "$work/frigate/media"
chmod 0777 "$work/shared"
printf '%s\n' 'abcd efgh ijkl mnop' > "$work/secrets/gmail_app_password"
chmod 0644 "$work/secrets/gmail_app_password"
sed -e 's/you@gmail.com/cam@example.com/' -e 's/to: \[cam@example.com\]/to: [me@example.com]/' \
  examples/frigate.yaml > "$work/snapmail.yaml"
grep -E 'username|to:|password_file' "$work/snapmail.yaml"

echo "== podman-compose up"
export SMTP_TEST_BIN="$bin"
# snapmail reads smtp.ca_file at start, and the test server makes its CA when it starts.
compose up -d smtp mosquitto frigate 2>&1 | grep -vE '^(podman|[0-9a-f]{64}$)|systemd' || true
deadline=$(( $(date +%s) + 60 ))
until [ -s "$work/shared/ca.pem" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the SMTP test server wrote no CA"; exit 1; }
  sleep 1
done
compose up -d snapmail 2>&1 | grep -vE '^(podman|[0-9a-f]{64}$)|systemd' || true

name() { $PODMAN ps -a --filter "label=com.docker.compose.project=$project" \
  --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1; }
smtp="$(name smtp)"; snapmail="$(name snapmail)"; mosquitto="$(name mosquitto)"
echo "containers: $($PODMAN ps --filter "label=com.docker.compose.project=$project" --format '{{.Names}} ({{.Status}})' | paste -sd ' ')"

deadline=$(( $(date +%s) + 120 ))
until $PODMAN logs "$snapmail" 2>&1 | grep -q 'mqtt: subscribed'; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "snapmail did not subscribe:"; $PODMAN logs "$snapmail" 2>&1 | tail -n 30; exit 1
  fi
  sleep 1
done
# The Frigate stand-in must answer by name in snapmail's network namespace (shared with
# smtp) before the event, or the mail goes out without its picture.
deadline=$(( $(date +%s) + 60 ))
until $PODMAN exec "$smtp" python3 -c 'import urllib.request; urllib.request.urlopen("http://frigate:5000/api/version", timeout=2)' 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "frigate does not answer by name"; exit 1; }
  sleep 1
done
echo "== snapmail subscribed; publishing a Frigate event into the Compose Mosquitto"
$PODMAN exec -i "$mosquitto" mosquitto_pub -t frigate/events -s < tests/fixtures/frigate-events-new-0.14.json

code="$(timeout 180 $PODMAN wait "$smtp" || echo timeout)"
echo "== SMTP test server (exit $code):"
$PODMAN logs "$smtp" 2>&1 | grep -E '^(smtp:|test |test result)' || true
echo "== snapmail log:"
$PODMAN logs "$snapmail" 2>&1 | sed "s/\x1b\[[0-9;]*m//g" | tail -n 6
[ "$code" = 0 ] || { echo "the mail did not arrive" >&2; exit 1; }
echo "== compose: the Frigate event was mailed through the Compose project"
