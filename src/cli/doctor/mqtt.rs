//! The MQTT step: connect to the broker the daemon would use, subscribe to its topics and
//! listen for a while, decoding what arrives with the daemon's own decoders.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, ConnectionError, Event as MqttEvent, Packet, QoS};
use snapmail::mqtt::{Decoded, Message};
use snapmail::plan::Plan;
use snapmail::sources;

use super::args::{secs, DoctorArgs};
use super::report::Report;

pub(super) async fn mqtt_steps(plan: &Plan, args: &DoctorArgs, report: &mut Report) {
    let config = &plan.config;
    let Some(url) = &config.mqtt.url else {
        report.skip(
            "mqtt",
            format!(
                "no mqtt.url: snapmail runs its own broker on {}; point your cameras there, or set mqtt.url",
                config.mqtt.listen
            ),
        );
        return;
    };
    // The address the daemon itself connects to (the plan has parsed `mqtt.url`).
    let addr = plan.mqtt.address.clone();
    let cfg = &config.mqtt;
    // A client id of its own, so the check does not push a running snapmail off the broker.
    let client_id = format!("{}-doctor-{}", cfg.client_id, std::process::id());
    let mut opts = snapmail::mqtt::client_options(cfg, &addr, client_id);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let t0 = Instant::now();
    let broker = format!("{}:{}", addr.host, addr.port);
    let connected = tokio::time::timeout(args.timeout, async {
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let who = cfg
        .username
        .as_deref()
        .map(|u| format!(" as {u}"))
        .unwrap_or_else(|| " without a login".into());
    match connected {
        Ok(Ok(())) => report.ok(
            "mqtt connect",
            format!(
                "connected to {broker}{who} in {} ms",
                t0.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => {
            let (fact, fix) = explain_mqtt(&e, &broker, url);
            report.fail("mqtt connect", fact, fix);
            return;
        }
        Err(_) => {
            report.fail(
                "mqtt connect",
                format!("no answer from {broker} within {}", secs(args.timeout)),
                "check mqtt.url; a firewall may drop the connection, or the port is not an MQTT broker",
            );
            return;
        }
    }

    let mut decoders = sources::decoders(config);
    let filters: Vec<Vec<String>> = decoders.iter().map(|d| d.topics()).collect();
    let topics: Vec<String> = filters.iter().flatten().cloned().collect();
    let qos = if cfg.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    for t in &topics {
        let _ = client.try_subscribe(t.clone(), qos);
    }
    let mut acked = 0usize;
    let subscribed = tokio::time::timeout(args.timeout, async {
        while acked < topics.len() {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        return Err(
                            "the broker refused the subscription (not allowed by its ACL)"
                                .to_owned(),
                        );
                    }
                    acked += 1;
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    })
    .await;
    match subscribed {
        Ok(Ok(())) => report.ok(
            "mqtt subscribe",
            format!("subscribed to {}", topics.join(", ")),
        ),
        Ok(Err(e)) => {
            report.fail(
                "mqtt subscribe",
                format!("{}: {e}", topics.join(", ")),
                "allow mqtt.username to read these topics in the broker's ACL",
            );
            return;
        }
        Err(_) => {
            report.fail(
                "mqtt subscribe",
                format!("no SUBACK within {}", secs(args.timeout)),
                "the broker did not confirm the subscription; check its log",
            );
            return;
        }
    }

    let mut seen = 0usize;
    let mut would_mail = 0usize;
    let deadline = tokio::time::Instant::now() + args.listen;
    loop {
        let polled = tokio::time::timeout_at(deadline, eventloop.poll()).await;
        let p = match polled {
            Err(_) => break,
            Ok(Ok(MqttEvent::Incoming(Packet::Publish(p)))) => p,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => {
                report.fail(
                    "mqtt listen",
                    format!("the connection dropped while listening: {e}"),
                    "check the broker's log (a second client with the same id, or a packet over mqtt.max_packet_bytes)",
                );
                return;
            }
        };
        seen += 1;
        let msg = Message {
            topic: &p.topic,
            payload: &p.payload,
            retained: p.retain,
        };
        let retained = if p.retain { " (retained)" } else { "" };
        for (decoder, f) in decoders.iter_mut().zip(&filters) {
            if !snapmail::mqtt::matches_any(&p.topic, f) {
                continue;
            }
            let verdict = match decoder.decode(msg) {
                Decoded::Event(ev) => {
                    would_mail += 1;
                    format!(
                        "{} {}: camera {} → would mail it (cooldown {})",
                        decoder.kind(),
                        ev.summary(),
                        ev.camera,
                        humantime::format_duration(config.cooldown_for(&ev.camera))
                    )
                }
                Decoded::Ignored(why) => format!("{}: ignored: {why}", decoder.kind()),
                Decoded::Malformed(why) => format!("{}: unreadable: {why}", decoder.kind()),
                Decoded::Control(c) => format!("{}: control command {c:?}", decoder.kind()),
            };
            if seen <= 50 {
                report.info("mqtt message", format!("{}{retained}: {verdict}", p.topic));
            }
        }
    }
    let _ = client.try_disconnect();
    if seen == 0 {
        report.warn(
            "mqtt listen",
            format!("no messages on {} in {}", topics.join(", "), humantime::format_duration(args.listen)),
            "trigger an event (walk past a camera) while doctor listens (--listen 60s), or check frigate.topic_prefix; `mosquitto_sub -v -t '#'` shows what the broker carries",
        );
    } else {
        report.ok(
            "mqtt listen",
            format!(
                "{seen} message(s) in {}, {would_mail} of them would be mailed (subject to the cooldown)",
                humantime::format_duration(args.listen)
            ),
        );
    }
}

pub(super) fn explain_mqtt(e: &ConnectionError, broker: &str, url: &str) -> (String, String) {
    use rumqttc::ConnectReturnCode as C;
    match e {
        ConnectionError::ConnectionRefused(C::BadUserNamePassword)
        | ConnectionError::ConnectionRefused(C::NotAuthorized) => (
            format!("{broker} refused the login"),
            "check mqtt.username and mqtt.password (Home Assistant's Mosquitto add-on wants a Home Assistant user or one from its logins list)".into(),
        ),
        ConnectionError::ConnectionRefused(code) => (
            format!("{broker} refused the connection ({code:?})"),
            "check mqtt.client_id and the broker's log".into(),
        ),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => (
            format!("nothing listens on {broker} (connection refused)"),
            format!("check mqtt.url ({url}) and that the broker is running"),
        ),
        ConnectionError::Tls(t) => (
            format!("TLS to {broker} failed: {t}"),
            "mqtts:// needs a broker certificate from a public CA; use mqtt://host:1883 for a plain broker".into(),
        ),
        other => (
            format!("cannot connect to {broker}: {other}"),
            format!("check mqtt.url ({url}); mqtts:// only for a TLS listener"),
        ),
    }
}
