//! The notification policy end to end: real Mosquitto, the Gmail-like SMTP server, a
//! Frigate-like HTTP server and the real binary. A motion storm becomes one mail plus one
//! digest; arm/disarm over MQTT is published retained and survives a restart.

use crate::support::rig::{self, T};
use crate::support::smtp::ReceivedMail;

fn parsed(mail: &ReceivedMail) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses as MIME")
}

fn subject(mail: &ReceivedMail) -> String {
    parsed(mail).subject().unwrap_or_default().to_owned()
}

fn inline_images(mail: &ReceivedMail) -> usize {
    parsed(mail)
        .parts
        .iter()
        .filter(|p| {
            mail_parser::MimeHeaders::content_type(*p)
                .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("jpeg"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_30_events_gives_one_mail_and_one_digest_listing_29() {
    let r = rig::start(1280, 720).await;
    let d = r
        .daemon(&[
            ("SNAPMAIL__RATE_LIMIT__COOLDOWN", "3s"),
            ("SNAPMAIL__DIGEST__MAX_IMAGES", "4"),
        ])
        .await;
    for n in 0..30 {
        r.frigate_event("driveway", n).await;
    }
    let mails = r.smtp.wait_for_messages(2, T).await;
    assert_eq!(subject(&mails[0]), "driveway: person (73%)");
    let digest = subject(&mails[1]);
    assert!(
        digest.starts_with("29 more events on driveway since "),
        "{digest}"
    );
    assert!(digest.ends_with(" — 29 person"), "{digest}");
    assert_eq!(inline_images(&mails[1]), 4, "digest.max_images pictures");
    assert_eq!(mails[1].rcpt_to, vec!["me@example.com".to_string()]);
    assert_eq!(d.count_log("suppressed by cooldown"), 29, "{}", d.logs());

    // Nothing else is owed: a later event on another camera is the very next mail.
    r.frigate_event("garden", 100).await;
    let mails = r.smtp.wait_for_messages(3, T).await;
    assert_eq!(subject(&mails[2]), "garden: person (73%)");
    assert_eq!(r.smtp.messages().len(), 3);
}

/// Subscribe with a plain MQTT client and return the first message on `topic`.
async fn first_message(url: &str, topic: &str) -> String {
    let (host, port) = url
        .trim_start_matches("mqtt://")
        .rsplit_once(':')
        .expect("host:port");
    let port: u16 = port.parse().unwrap();
    let mut opts = rumqttc::MqttOptions::new("policy-test-reader", (host, port));
    opts.set_keep_alive(5);
    let (client, mut events) = rumqttc::AsyncClient::builder(opts).capacity(10).build();
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let read = async {
        loop {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) = events.poll().await {
                if p.topic == topic {
                    return String::from_utf8_lossy(&p.payload).into_owned();
                }
            }
        }
    };
    tokio::time::timeout(T, read)
        .await
        .unwrap_or_else(|_| panic!("nothing on {topic}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disarm_over_mqtt_is_published_and_survives_a_restart() {
    let r = rig::start(640, 360).await;
    // The control topics follow the instance id (the rig's client id): pin them.
    let mut d = r
        .daemon(&[
            ("SNAPMAIL__RATE_LIMIT__COOLDOWN", "0s"),
            ("SNAPMAIL__CONTROL__TOPIC_PREFIX", "snapmail"),
        ])
        .await;
    r.broker.publish("snapmail/garage/set", b"OFF", false).await;
    d.wait_for_log("control: garage disarmed", T).await;
    let state = first_message(&r.broker.url(), "snapmail/garage/state").await;
    assert!(state.contains("\"state\":\"disarmed\""), "{state}");
    crate::support::wait::wait_until("the state file", T, || {
        std::fs::read_to_string(d.dir().join("state.json"))
            .is_ok_and(|s| s.contains("\"armed\": false"))
    })
    .await;

    d.restart();
    d.wait_for_log("mqtt: subscribed", T).await;
    r.frigate_event("garage", 1).await;
    d.wait_for_log("filtered by the camera is disarmed", T)
        .await;
    // Another camera still mails, and proves the garage event was decided first.
    r.frigate_event("driveway", 2).await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(subject(&mails[0]), "driveway: person (73%)");
    assert_eq!(r.smtp.messages().len(), 1);

    r.broker.publish("snapmail/all/set", b"ON", false).await;
    d.wait_for_log("control: all cameras armed", T).await;
    r.frigate_event("garage", 3).await;
    let mails = r.smtp.wait_for_messages(2, T).await;
    assert_eq!(subject(&mails[1]), "garage: person (73%)");
}
