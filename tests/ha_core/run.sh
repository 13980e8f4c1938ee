#!/usr/bin/env bash
# Runs drive.py: snapmail's Home Assistant discovery against a real Home Assistant Core and
# a real Mosquitto. Manual check, not part of `cargo test` or CI.
#
#   tests/ha_core/run.sh [WORK_DIR]     (default /tmp/snapmail-ha)
#
# Needs mosquitto and a Python that Home Assistant accepts in PYTHON (default python3.13).
# HA_VERSION picks the release (default 2025.4.4, the newest that installs on Python
# 3.13.0; 2025.5 and later want 3.13.2+, 2026.3 and later 3.14.2+). Home Assistant's own
# package_constraints.txt pins the dependencies, without which pip backtracks for long.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-/tmp/snapmail-ha}
python=${PYTHON:-python3.13}
version=${HA_VERSION:-2025.4.4}
mkdir -p "$work"
if [ ! -x "$work/venv/bin/hass" ]; then
  "$python" -m venv "$work/venv"
  "$work/venv/bin/pip" download -q --no-deps -d "$work/dl" "homeassistant==$version"
  unzip -p "$work"/dl/homeassistant-"$version"-*.whl homeassistant/package_constraints.txt > "$work/constraints.txt"
  "$work/venv/bin/pip" install -q --prefer-binary -c "$work/constraints.txt" "homeassistant==$version" paho-mqtt==2.1.0
fi
(cd "$here/../.." && cargo build -q)
exec python3 "$here/drive.py" "$here/../../target/debug/snapmail" "$work" "$work/venv/bin/hass"
