//! The MQTT step: connect to the broker the daemon would use, subscribe to its topics and
//! listen for a while, decoding what arrives with the daemon's own decoders.

use std::time::Instant;

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
    let mut opts = snapmail::mqtt::client_options(&plan.mqtt, client_id);
    opts.set_keep_alive(30);
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::builder(opts).capacity(16).build();
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
    let tls = match (addr.tls, &cfg.ca_file) {
        (true, Some(_)) => " over TLS (trusting mqtt.ca_file)",
        (true, None) => " over TLS",
        (false, _) => "",
    };
    match connected {
        Ok(Ok(())) => report.ok(
            "mqtt connect",
            format!(
                "connected to {broker}{who}{tls} in {} ms",
                t0.elapsed().as_millis()
            ),
        ),
        Ok(Err(e)) => {
            let (fact, fix) = explain_mqtt(&e, &broker, url, cfg.ca_file.is_some());
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
        // The client refuses a topic that is not UTF-8 before it gets here.
        let Ok(topic) = std::str::from_utf8(&p.topic) else {
            continue;
        };
        seen += 1;
        let msg = Message {
            topic,
            payload: &p.payload,
            retained: p.retain,
        };
        let retained = if p.retain { " (retained)" } else { "" };
        for (decoder, f) in decoders.iter_mut().zip(&filters) {
            if !snapmail::mqtt::matches_any(topic, f) {
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
                report.info("mqtt message", format!("{topic}{retained}: {verdict}"));
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

pub(super) fn explain_mqtt(
    e: &ConnectionError,
    broker: &str,
    url: &str,
    ca_file: bool,
) -> (String, String) {
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
        e @ ConnectionError::Tls(t) if snapmail::mqtt::certificate_refused(e) => (
            format!("TLS to {broker} failed: {t}"),
            if ca_file {
                "mqtt.ca_file holds neither the broker's own certificate nor the CA that signed it, or the host in mqtt.url is not a name the certificate is issued for; give the right PEM file".into()
            } else {
                "the broker's certificate is not from a public CA: set mqtt.ca_file to its CA's or its own (self-signed) certificate, as PEM".into()
            },
        ),
        ConnectionError::Tls(t) => (
            format!("TLS to {broker} failed: {t}"),
            format!("mqtts:// needs the broker's TLS listener (often port 8883); check mqtt.url ({url}), or use mqtt://host:1883 for a plain one"),
        ),
        other => (
            format!("cannot connect to {broker}: {other}"),
            format!("check mqtt.url ({url}); mqtts:// only for a TLS listener"),
        ),
    }
}
