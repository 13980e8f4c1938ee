"""Writes Home Assistant's view (states, entity and device registry) to probe.json every
second, and runs the service calls found in probe_cmd.json."""
import datetime
import json
import os

from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.event import async_track_time_interval

DOMAIN = "probe"


def _write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def _take(path):
    try:
        with open(path) as f:
            cmds = json.load(f)
    except FileNotFoundError:
        return []
    os.remove(path)
    return cmds


async def async_setup(hass, config):
    out = hass.config.path("probe.json")
    cmd = hass.config.path("probe_cmd.json")

    async def tick(now=None):
        for c in await hass.async_add_executor_job(_take, cmd):
            await hass.services.async_call(c["domain"], c["service"], c.get("data", {}), blocking=True)
        ent = er.async_get(hass)
        dev = dr.async_get(hass)
        data = {
            "states": {s.entity_id: {"state": s.state, "attributes": dict(s.attributes)} for s in hass.states.async_all()},
            "entities": {e.entity_id: {"unique_id": e.unique_id, "platform": e.platform, "device_id": e.device_id} for e in ent.entities.values()},
            "devices": {d.id: {"identifiers": sorted(list(i) for i in d.identifiers), "name": d.name} for d in dev.devices.values()},
        }
        await hass.async_add_executor_job(_write, out, data)

    async_track_time_interval(hass, tick, datetime.timedelta(seconds=1))
    return True
