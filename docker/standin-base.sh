#!/usr/bin/env bash
# Builds a local stand-in for the Dockerfile's builder base (`rust:1-bookworm`) where no
# container registry can be reached: Debian bookworm from Debian's own packages (mmdebstrap)
# plus the stable Rust toolchain from rustup, laid out like the official image
# (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo), imported into podman under
# the base's own name so `FROM rust:1-bookworm` resolves without pulling.
#
# Needs root, mmdebstrap and podman:   sudo docker/standin-base.sh
set -euo pipefail

tag="${1:-docker.io/library/rust:1-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "$tag" && [ "${REBUILD_BASE:-0}" != 1 ]; then
  echo "stand-in base $tag already exists (REBUILD_BASE=1 rebuilds it)"
  exit 0
fi

tarball="$(mktemp --suffix=.tar)"
trap 'rm -f "$tarball"' EXIT

# What rust:1-bookworm's own base (buildpack-deps) provides that a Rust build touches:
# a C toolchain for build scripts, certificates, curl and git.
# rustup-init is fetched from rustup's dist server (the file sh.rustup.rs would fetch) and
# installs the minimal stable toolchain; the hook borrows the host's resolv.conf for that.
# Certificates the host added locally (/usr/local/share/ca-certificates, e.g. a TLS-inspecting
# egress proxy's CA) are trusted inside too, or rustup, apt and cargo could not verify their
# downloads where the host can.
arch="$(uname -m)"
nice -n 10 mmdebstrap --variant=apt \
  --include=ca-certificates,curl,gcc,libc6-dev,make,pkg-config,git,xz-utils \
  --customize-hook='cp /etc/resolv.conf "$1/etc/resolv.conf"' \
  --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
  --customize-hook='chroot "$1" update-ca-certificates' \
  --customize-hook="curl --proto =https --tlsv1.2 -fsSL -o \"\$1/tmp/rustup-init\" https://static.rust-lang.org/rustup/dist/${arch}-unknown-linux-gnu/rustup-init" \
  --customize-hook='chmod +x "$1/tmp/rustup-init"' \
  --customize-hook='chroot "$1" env RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain stable' \
  --customize-hook='chmod -R a+w "$1/usr/local/rustup" "$1/usr/local/cargo"' \
  --customize-hook='rm -rf "$1/tmp/rustup-init" "$1/etc/resolv.conf" "$1"/var/lib/apt/lists/* "$1/usr/local/cargo/registry"' \
  bookworm "$tarball" "$mirror"

podman import \
  --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  "$tarball" "$tag"
podman --runtime runc --cgroup-manager=cgroupfs run --rm --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 --network host "$tag" sh -c 'rustc --version && cargo --version'
