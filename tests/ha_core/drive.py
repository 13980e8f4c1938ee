"""Drives a real Home Assistant Core against a real Mosquitto and two snapmail instances:
entities created for both devices without collisions, snooze set from the number and shown
by the timestamp sensor, switches per instance, the test button and counters across a
restart, and a camera dropped from the configuration removed from Home Assistant.

Usage: drive.py SNAPMAIL_BINARY WORK_DIR HASS_EXECUTABLE (see run.sh). Not part of
`cargo test`: it needs Home Assistant Core installed."""
import json, os, shutil, signal, socket, subprocess, sys, time

BIN, HA, HASS = sys.argv[1], sys.argv[2], sys.argv[3]
CFG = f"{HA}/config"
shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config"), CFG, dirs_exist_ok=True)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait(what, pred, timeout=120):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            with open(f"{CFG}/probe.json") as f:
                last = json.load(f)
            r = pred(last)
            if r:
                return r
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"TIMEOUT waiting for {what}")

def call(domain, service, data):
    with open(f"{CFG}/probe_cmd.json.tmp", "w") as f:
        json.dump([{"domain": domain, "service": service, "data": data}], f)
    os.replace(f"{CFG}/probe_cmd.json.tmp", f"{CFG}/probe_cmd.json")

def by_uid(p, uid):
    for eid, e in p["entities"].items():
        if e["unique_id"] == uid and e["platform"] == "mqtt":
            return eid
    return None

def state(p, uid):
    eid = by_uid(p, uid)
    return p["states"].get(eid, {}).get("state") if eid else None

port = free_port()
for f in ["probe.json", "probe_cmd.json", "home-assistant.log"]:
    try: os.remove(f"{CFG}/{f}")
    except FileNotFoundError: pass
shutil.rmtree(f"{CFG}/.storage", ignore_errors=True)
os.makedirs(f"{CFG}/.storage")
with open(f"{HA}/mosquitto.conf", "w") as f:
    f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
entries = {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [{
    "entry_id": "01JMQTTTEST0000000000000000", "version": 1, "minor_version": 2, "domain": "mqtt",
    "title": "127.0.0.1", "data": {"broker": "127.0.0.1", "port": port},
    "options": {"discovery": True, "discovery_prefix": "homeassistant"},
    "pref_disable_new_entities": False, "pref_disable_polling": False, "source": "user",
    "unique_id": None, "disabled_by": None}]}}
with open(f"{CFG}/.storage/core.config_entries", "w") as f:
    json.dump(entries, f)

procs = []
def start(cmd, **kw):
    p = subprocess.Popen(cmd, **kw); procs.append(p); return p

log = open(f"{HA}/run.log", "w")
mosq = start(["mosquitto", "-c", f"{HA}/mosquitto.conf"], stdout=log, stderr=log)
ha = start([HASS, "-c", CFG], stdout=log, stderr=log)

def snapmail(name, client_id, cameras):
    d = f"{HA}/{name}"
    os.makedirs(d, exist_ok=True)
    conf = f"mqtt:\n  url: mqtt://127.0.0.1:{port}\n  client_id: {client_id}\nhomeassistant:\n  discovery: true\n  stats_interval: 2s\noutbox:\n  dir: ./spool\nhttp:\n  listen: 127.0.0.1:{free_port()}\ncameras:\n" + "".join(f"  {c}: {{}}\n" for c in cameras)
    with open(f"{d}/config.yaml", "w") as f:
        f.write(conf)
    out = open(f"{d}/log.txt", "a")
    return start([BIN, "run", "--config", "config.yaml"], cwd=d, stdout=out, stderr=out)

try:
    wait("Home Assistant and the probe", lambda p: "states" in p, 600)
    print("HA up", flush=True)
    for n in ["inst_a", "inst_b"]:
        shutil.rmtree(f"{HA}/{n}", ignore_errors=True)
    a = snapmail("inst_a", "snapmail", ["a", "b"])
    b = snapmail("inst_b", "snapmail-garage", ["a"])
    uids_a = ["snapmail_a_notifications", "snapmail_b_notifications", "snapmail_a_snooze", "snapmail_a_snoozed_until", "snapmail_send_test_email", "snapmail_sent_today", "snapmail_last_mail"]
    uids_b = ["snapmail_garage_a_notifications", "snapmail_garage_a_snooze", "snapmail_garage_send_test_email", "snapmail_garage_sent_today"]
    p = wait("both devices' entities", lambda p: p if all(by_uid(p, u) for u in uids_a + uids_b) else None)
    devs = [d for d in p["devices"].values() if any(i[0] == "mqtt" for i in d["identifiers"])]
    print("devices:", [(d["name"], d["identifiers"]) for d in devs])
    for u in uids_a + uids_b:
        print(f"  {u} -> {by_uid(p, u)} = {state(p, u)}")
    assert len(devs) == 2, devs
    wait("switches on", lambda p: state(p, "snapmail_a_notifications") == "on" and state(p, "snapmail_garage_a_notifications") == "on")
    print("switches on; availability ok")

    # Snooze A's camera a for 15 minutes from the number entity.
    call("number", "set_value", {"entity_id": by_uid(p, "snapmail_a_snooze"), "value": 15})
    p = wait("snooze shown", lambda p: p if state(p, "snapmail_a_snooze") == "15" and (state(p, "snapmail_a_snoozed_until") or "unknown") not in ("unknown", "unavailable") else None)
    print("snooze: number", state(p, "snapmail_a_snooze"), "snoozed_until", state(p, "snapmail_a_snoozed_until"), "garage number", state(p, "snapmail_garage_a_snooze"))
    assert state(p, "snapmail_garage_a_snooze") == "0"
    call("number", "set_value", {"entity_id": by_uid(p, "snapmail_a_snooze"), "value": 0})
    p = wait("snooze cancelled", lambda p: p if state(p, "snapmail_a_snooze") == "0" and state(p, "snapmail_a_snoozed_until") == "unknown" else None)
    print("snooze cancelled: snoozed_until", state(p, "snapmail_a_snoozed_until"))

    # A's switch off: only A's camera a.
    call("switch", "turn_off", {"entity_id": by_uid(p, "snapmail_a_notifications")})
    p = wait("A off, B on", lambda p: p if state(p, "snapmail_a_notifications") == "off" and state(p, "snapmail_garage_a_notifications") == "on" else None)
    print("A's switch off, B's on")

    # B's test button: a preview mail from B, counted by B only.
    call("button", "press", {"entity_id": by_uid(p, "snapmail_garage_send_test_email")})
    p = wait("B sent_today 1", lambda p: p if state(p, "snapmail_garage_sent_today") == "1" else None)
    print("B sent_today", state(p, "snapmail_garage_sent_today"), "A sent_today", state(p, "snapmail_sent_today"), "B last_mail", state(p, "snapmail_garage_last_mail"))
    assert state(p, "snapmail_sent_today") == "0"

    # Restart B: the counter stays.
    b.send_signal(signal.SIGTERM); b.wait(30)
    p = wait("B unavailable", lambda p: p if state(p, "snapmail_garage_sent_today") == "unavailable" else None)
    print("B stopped: unavailable")
    b = snapmail("inst_b", "snapmail-garage", ["a"])
    p = wait("B back with sent_today 1", lambda p: p if state(p, "snapmail_garage_sent_today") == "1" and state(p, "snapmail_garage_a_notifications") == "on" else None)
    print("B restarted: sent_today", state(p, "snapmail_garage_sent_today"))

    # Restart A without camera b: b's entities go.
    b_ids = [by_uid(p, u) for u in ["snapmail_b_notifications", "snapmail_b_snooze", "snapmail_b_snoozed_until"]]
    print("b entities before:", b_ids)
    a.send_signal(signal.SIGTERM); a.wait(30)
    a = snapmail("inst_a", "snapmail", ["a"])
    p = wait("b removed", lambda p: p if not any(by_uid(p, u) for u in ["snapmail_b_notifications", "snapmail_b_snooze", "snapmail_b_snoozed_until"]) and by_uid(p, "snapmail_a_notifications") and state(p, "snapmail_a_notifications") == "off" else None)
    print("after restart without b: b entities", [by_uid(p, u) for u in ["snapmail_b_notifications", "snapmail_b_snooze", "snapmail_b_snoozed_until"]], "a switch", state(p, "snapmail_a_notifications"))
    print("ALL CHECKS PASSED")
finally:
    for pr in reversed(procs):
        if pr.poll() is None:
            pr.send_signal(signal.SIGTERM)
    for pr in procs:
        try: pr.wait(30)
        except subprocess.TimeoutExpired: pr.kill()
