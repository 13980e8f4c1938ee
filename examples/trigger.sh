#!/bin/sh
# Mail a local picture through snapmail from any script (cron job, doorbell button, NVR hook).
# Needs a `kind: mqtt` source on scripts/alert with json.image_base64 (see examples/scripts.yaml):
#   ./examples/trigger.sh porch person /tmp/porch.jpg
set -eu
camera=${1:?usage: trigger.sh CAMERA LABEL PICTURE.jpg [BROKER]}
label=${2:?usage: trigger.sh CAMERA LABEL PICTURE.jpg [BROKER]}
picture=${3:?usage: trigger.sh CAMERA LABEL PICTURE.jpg [BROKER]}
broker=${4:-127.0.0.1}
printf '{"camera":"%s","label":"%s","image":"%s"}' "$camera" "$label" "$(base64 -w0 "$picture")" |
  mosquitto_pub -h "$broker" -t scripts/alert -q 1 -s
