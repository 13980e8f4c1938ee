//! The container image, run with podman the way Docker Compose runs it (user 10001, a named
//! volume on /data, the config file mounted read-only) against a real Mosquitto, the
//! Gmail-like TLS SMTP server and a Frigate-like HTTP server on this machine's loopback.
//!
//! Ignored by `cargo test`: it needs podman and a built image. `docker/test-image.sh` builds
//! the image and runs this file with `SNAPMAIL_IMAGE` set (see docs/docker.md).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::wait::wait_until;
use crate::support::{http, images, mosquitto, rig, smtp};

const T: Duration = Duration::from_secs(90);
const USER: &str = "10001:10001";

/// `podman` with this machine's global flags (`SNAPMAIL_PODMAN`, e.g.
/// `podman --runtime runc --cgroup-manager=cgroupfs`).
fn podman(args: &[&str]) -> Output {
    let words = std::env::var("SNAPMAIL_PODMAN").unwrap_or_else(|_| "podman".into());
    let mut words = words.split_whitespace();
    let mut cmd = Command::new(words.next().unwrap());
    cmd.args(words).args(args);
    cmd.output().expect("run podman")
}

fn ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the containers and the volume when the test ends, whichever way.
struct Cleanup {
    containers: Vec<String>,
    volume: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "0", c]);
        }
        let _ = podman(&["volume", "rm", "-f", &self.volume]);
    }
}

/// Starts the image detached as user 10001 with `extra` environment; returns the name.
fn run(image: &str, name: &str, volume: &str, files: &Path, env: &[(&str, String)]) -> String {
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        name.into(),
        "--user".into(),
        USER.into(),
        "--network".into(),
        "host".into(),
        "-v".into(),
        format!("{volume}:/data"),
        "-v".into(),
        format!("{}:/etc/snapmail:ro", files.display()),
        "-e".into(),
        "SNAPMAIL_CONFIG=/etc/snapmail/snapmail.yaml".into(),
    ];
    let extra = std::env::var("SNAPMAIL_PODMAN_RUN").unwrap_or_default();
    args.extend(extra.split_whitespace().map(str::to_owned));
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.push(image.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&args);
    name.to_owned()
}

fn logs(name: &str) -> String {
    let out = podman(&["logs", name]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the image's own HEALTHCHECK command once; true when it reported healthy.
fn healthy(name: &str) -> bool {
    podman(&["healthcheck", "run", name]).status.success()
}

fn spooled(volume_dir: &Path) -> usize {
    rig::spooled(&volume_dir.join("outbox"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs podman and a built image: run docker/test-image.sh"]
async fn the_image_mails_a_frigate_event_keeps_its_spool_and_reports_health() {
    let image = std::env::var("SNAPMAIL_IMAGE").expect("SNAPMAIL_IMAGE names the image to test");
    let broker = mosquitto::start();
    let smtp = smtp::start().await;
    let frigate = http::start(http::frigate(images::camera_jpeg(1920, 1080, 85))).await;

    // The mounted configuration: readable by user 10001, like a file a user drops in.
    let files = tempfile::tempdir().unwrap();
    std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(&smtp.ca_file, files.path().join("ca.pem")).unwrap();
    let config = format!(
        "mqtt:\n  url: {mqtt}\nsmtp:\n  host: localhost\n  port: {port}\n  security: starttls\n  \
         username: cam@example.com\n  password_file: /etc/snapmail/app_password\n  \
         to: [me@example.com]\n  ca_file: /etc/snapmail/ca.pem\n  timeout: 20s\n\
         frigate:\n  url: {frigate}\noutbox:\n  retry_min: 1s\n  retry_max: 2s\n",
        mqtt = broker.url(),
        port = smtp.starttls_port,
        frigate = frigate.url(),
    );
    std::fs::write(files.path().join("snapmail.yaml"), config).unwrap();
    std::fs::write(files.path().join("app_password"), "abcd efgh ijkl mnop\n").unwrap();
    for f in ["snapmail.yaml", "app_password", "ca.pem"] {
        let p = files.path().join(f);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let tag = std::process::id();
    let volume = format!("snapmail-image-test-{tag}");
    let mut cleanup = Cleanup {
        containers: vec![],
        volume: volume.clone(),
    };
    ok(&["volume", "create", &volume]);
    let volume_dir = PathBuf::from(ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]));
    // Its own health port, so nothing else on the machine answers the health check.
    let http_listen = format!("127.0.0.1:{}", crate::support::free_port());

    // 1. The right app password: healthy, and a Frigate event becomes a mail.
    let good = run(
        &image,
        &format!("snapmail-image-test-{tag}-good"),
        &volume,
        files.path(),
        &[("SNAPMAIL__HTTP__LISTEN", http_listen.clone())],
    );
    cleanup.containers.push(good.clone());
    wait_until("the container to subscribe", T, || {
        logs(&good).contains("mqtt: subscribed")
    })
    .await;
    wait_until("the HEALTHCHECK to report healthy", T, || healthy(&good)).await;
    println!("image: HEALTHCHECK healthy after subscribing");

    broker
        .publish(
            "frigate/events",
            rig::frigate_event("driveway", 1).as_bytes(),
            false,
        )
        .await;
    let mail = smtp.wait_for_messages(1, T).await.remove(0);
    let text = mail.text();
    assert!(
        text.contains("image/jpeg"),
        "the snapshot is attached: {mail:?}"
    );
    println!(
        "image: mail delivered: subject {:?}, {} bytes, to {:?}",
        mail.header("Subject").unwrap_or_default(),
        mail.data.len(),
        mail.rcpt_to
    );

    // /data is the named volume and user 10001 wrote the outbox into it.
    let outbox = volume_dir.join("outbox");
    let meta = std::fs::metadata(&outbox).expect("the outbox directory in the volume");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (10001, 10001),
        "written by user 10001"
    );
    println!("image: /data writable by 10001: {}", outbox.display());

    ok(&["kill", "--signal", "TERM", &good]);
    let code = ok(&["wait", &good]);
    assert_eq!(
        code,
        "0",
        "SIGTERM ends the daemon cleanly: {}",
        logs(&good)
    );
    println!("image: SIGTERM -> exit {code}");

    // 2. A wrong app password on the same volume: healthy until Gmail refuses the login,
    // then unhealthy; the mail waits in the spool and survives SIGTERM.
    std::fs::write(files.path().join("app_password"), "wrongwrongwrongx\n").unwrap();
    let bad = run(
        &image,
        &format!("snapmail-image-test-{tag}-bad"),
        &volume,
        files.path(),
        &[("SNAPMAIL__HTTP__LISTEN", http_listen.clone())],
    );
    cleanup.containers.push(bad.clone());
    wait_until("the second container to subscribe", T, || {
        logs(&bad).contains("mqtt: subscribed")
    })
    .await;
    wait_until("the HEALTHCHECK to report healthy", T, || healthy(&bad)).await;
    broker
        .publish(
            "frigate/events",
            rig::frigate_event("porch", 2).as_bytes(),
            false,
        )
        .await;
    wait_until("the login to be refused", T, || {
        logs(&bad).contains("LOGIN REFUSED")
    })
    .await;
    wait_until("the HEALTHCHECK to report unhealthy", T, || !healthy(&bad)).await;
    let report = podman(&["healthcheck", "run", &bad]);
    println!(
        "image: HEALTHCHECK after the refused login: exit {:?}, {}",
        report.status.code(),
        String::from_utf8_lossy(&report.stdout).trim()
    );
    assert_eq!(smtp.count(), 1, "nothing more was delivered");
    assert_eq!(
        spooled(&volume_dir),
        1,
        "the refused mail waits in the spool"
    );

    ok(&["kill", "--signal", "TERM", &bad]);
    let code = ok(&["wait", &bad]);
    assert_eq!(code, "0", "SIGTERM ends the daemon cleanly: {}", logs(&bad));
    assert_eq!(spooled(&volume_dir), 1, "the spool is kept across the stop");
    println!(
        "image: SIGTERM with a mail queued -> exit {code}; spool kept: {} mail in {}",
        spooled(&volume_dir),
        outbox.display()
    );
    // The log is coloured; the summary is read by people.
    let log = regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&logs(&bad), "")
        .into_owned();
    for line in log
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        println!("image: log: {line}");
    }
}

/// The SMTP side of `docker/test-compose.sh`, run inside the Compose project: the Gmail-like
/// server on `SMTP_PORT` of its container's loopback (snapmail shares that network
/// namespace), the CA it signs with and a camera JPEG for the Frigate stand-in written to
/// `SMTP_SHARED`; it passes when the mail of the published Frigate event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs inside the Compose project of docker/test-compose.sh"]
async fn compose_smtp_server_receives_the_frigate_mail() {
    let port: u16 = std::env::var("SMTP_PORT")
        .expect("SMTP_PORT")
        .parse()
        .unwrap();
    let shared = PathBuf::from(std::env::var("SMTP_SHARED").expect("SMTP_SHARED"));
    let smtp = smtp::SmtpServer::builder()
        .starttls_port(port)
        .start()
        .await;
    // Written whole under a temporary name, so readers never see half a file.
    let publish = |name: &str, bytes: &[u8]| {
        let tmp = shared.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::rename(&tmp, shared.join(name)).unwrap();
    };
    publish("snapshot.jpg", &images::camera_jpeg(1920, 1080, 85));
    publish("ca.pem", smtp.ca_pem.as_bytes());
    println!(
        "smtp: STARTTLS on 127.0.0.1:{port}; CA and snapshot in {}",
        shared.display()
    );

    let mail = smtp
        .wait_for_messages(1, Duration::from_secs(600))
        .await
        .remove(0);
    assert!(
        mail.text().contains("image/jpeg"),
        "the snapshot is attached: {mail:?}"
    );
    assert_eq!(mail.rcpt_to, vec!["me@example.com"]);
    println!(
        "smtp: mail received: subject {:?}, {} bytes, from {:?} to {:?}, {} AUTH command(s)",
        mail.header("Subject").unwrap_or_default(),
        mail.data.len(),
        mail.mail_from,
        mail.rcpt_to,
        smtp.auth_attempts()
    );
}
