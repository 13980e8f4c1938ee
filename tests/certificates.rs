//! Home-made certificates: a relay with a self-signed certificate made the ordinary way
//! (`openssl req -x509`, which marks it CA:TRUE) is trusted when that certificate is given in
//! `smtp.ca_file`, as curl and Python's smtplib trust it; an untrusted certificate is a
//! configuration problem that stops sending (and says so), not something to retry for a day;
//! and `doctor` tells the cases apart. The same for an MQTT broker behind `mqtts://` and
//! `mqtt.ca_file`.

use crate::support::certs::TestCa;
use crate::support::cli::doctor;
use crate::support::http;
use crate::support::images;
use crate::support::mosquitto;
use crate::support::rig::{spooled, Rig, T};
use crate::support::smtp::{self, SmtpServer};
use crate::support::wait::wait_until;

async fn rig(smtp: SmtpServer) -> Rig {
    Rig {
        broker: mosquitto::start(),
        smtp,
        frigate: http::start(http::frigate(images::camera_jpeg(640, 360, 85))).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_relay_certificate_given_in_ca_file_is_trusted() {
    let r = rig(SmtpServer::builder().self_signed().start().await).await;
    let d = r.daemon(&[]).await;
    r.frigate_event("driveway", 1).await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(mails[0].rcpt_to, vec!["me@example.com"]);
    assert!(!d.logs().contains("certificate"), "{}", d.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_sending_until_the_configuration_changes() {
    let r = rig(smtp::start().await).await;
    // A CA file, but not the one that signed the server's certificate.
    let other = SmtpServer::builder().self_signed().start().await;
    let config = r.config().replace(
        &r.smtp.ca_file.display().to_string(),
        &other.ca_file.display().to_string(),
    );
    let d = crate::support::daemon::Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    r.frigate_event("driveway", 1).await;
    d.wait_for_log("TLS CERTIFICATE REFUSED", T).await;
    let logs = d.logs();
    assert!(
        logs.contains("smtp.ca_file") && logs.contains("tried again every 15m"),
        "the fix and the pause are named:\n{logs}"
    );
    // Kept, not buried, and not retried on the transient schedule (retry_min is 1 s here).
    wait_until("the mail stays spooled", T, || {
        spooled(&d.dir().join("spool")) == 1
    })
    .await;
    assert_eq!(d.count_log("TLS CERTIFICATE REFUSED"), 1, "{logs}");
    assert!(!logs.contains("retrying in"), "{logs}");
    assert!(r.smtp.messages().is_empty());
}

#[tokio::test]
async fn doctor_tells_a_pinned_self_signed_certificate_from_an_untrusted_one() {
    let r = rig(SmtpServer::builder().self_signed().start().await).await;
    let config = format!("{}cameras:\n  driveway: {{}}\n", r.config());
    let out = doctor(&config, &[], &[]).await.stdout;
    assert!(
        out.contains("✔ smtp tls")
            && out.contains("the server's own certificate from smtp.ca_file, valid for localhost"),
        "{out}"
    );

    // Without the certificate the same server is refused, with the fix.
    let without = config.replace(&format!("  ca_file: {}\n", r.smtp.ca_file.display()), "");
    assert_ne!(without, config);
    let out = doctor(&without, &[], &[]).await.stdout;
    let line = out
        .lines()
        .find(|l| l.starts_with("✘ smtp tls"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("presents a self-signed certificate")
            && line.contains("set smtp.ca_file to that certificate"),
        "{out}"
    );
}

/// `mqtts://` to a broker with a self-signed certificate: given in `mqtt.ca_file`, the
/// daemon connects over TLS and mails what arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_broker_certificate_given_in_mqtt_ca_file_is_trusted() {
    let cert = TestCa::self_signed(std::net::Ipv4Addr::LOCALHOST.into());
    let r = Rig {
        broker: mosquitto::start_tls(&cert.chain_pem(), &cert.key_pem()),
        smtp: smtp::start().await,
        frigate: http::start(http::frigate(images::camera_jpeg(640, 360, 85))).await,
    };
    let tls_port = r.broker.tls_port.expect("TLS listener");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("broker.pem");
    std::fs::write(&ca_file, &cert.ca_pem).unwrap();
    let config = r.config().replacen(
        &format!("  url: {}\n", r.broker.url()),
        &format!(
            "  url: mqtts://localhost:{tls_port}\n  ca_file: {}\n",
            ca_file.display()
        ),
        1,
    );
    let d = crate::support::daemon::Daemon::start(Some(&config), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;
    // Published on the plain listener; the daemon receives it over TLS.
    r.frigate_event("driveway", 1).await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(mails[0].rcpt_to, vec!["me@example.com"]);
    assert!(
        r.broker.log().contains("snapmail-test"),
        "the daemon connected:\n{}",
        r.broker.log()
    );
}
