#!/usr/bin/env bash
# Local stand-ins for the images docker/docker-compose.yml names besides snapmail, for
# docker/test-compose.sh where no container registry is reachable: one Debian bookworm
# root file system (mmdebstrap, Debian's packages only) with Mosquitto and Python, imported
# under the names the Compose file uses:
#   docker.io/library/eclipse-mosquitto:2    mosquitto -c /mosquitto/config/mosquitto.conf
#   ghcr.io/blakeblackshear/frigate:stable   frigate-standin.py (Frigate's snapshot API on 5000)
#   localhost/snapmail-standin:bookworm      a shell (runs the SMTP test server)
# Needs root, mmdebstrap and podman:   sudo docker/standins/standin-images.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

tarball="$(mktemp --suffix=.tar)"
trap 'rm -f "$tarball"' EXIT
nice -n 10 mmdebstrap --variant=apt \
  --include=mosquitto,mosquitto-clients,python3,ca-certificates \
  --customize-hook="install -m 0755 '$here/frigate-standin.py' \"\$1/usr/local/bin/frigate-standin.py\"" \
  --customize-hook='chroot "$1" install -d -o mosquitto -g mosquitto /mosquitto/config /mosquitto/data /mosquitto/log' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
  bookworm "$tarball" "$mirror"

podman import --change 'CMD ["bash"]' "$tarball" localhost/snapmail-standin:bookworm
podman import --change 'CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]' \
  --change 'EXPOSE 1883' "$tarball" docker.io/library/eclipse-mosquitto:2
podman import --change 'CMD ["python3", "/usr/local/bin/frigate-standin.py"]' \
  --change 'EXPOSE 5000' "$tarball" ghcr.io/blakeblackshear/frigate:stable
