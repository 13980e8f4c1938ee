//! Chaos at process level with the real binary: the broker restarts while events flow, the
//! SMTP server is down for a while, snapmail is SIGKILLed mid-storm, and the spool's disk
//! fills up. Each time nothing accepted is lost and the daemon recovers by itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::daemon::Daemon;
use crate::support::rig::{self, spooled, T};
use crate::support::smtp::ReceivedMail;
use crate::support::wait::wait_until;

fn subjects(mails: &[ReceivedMail]) -> BTreeSet<String> {
    mails.iter().filter_map(|m| m.header("Subject")).collect()
}

fn subject(camera: &str) -> String {
    format!("{camera}: person (73%)")
}

/// The daemon is still running.
fn assert_running(d: &mut Daemon) {
    assert!(
        d.try_exit().is_none(),
        "snapmail exited\n--- log ---\n{}",
        d.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_disconnected_are_mailed_with_a_persistent_session() {
    let mut r = rig::start(640, 360).await;
    let mut d = r
        .daemon(&[
            ("SNAPMAIL__MQTT__QOS", "1"),
            ("SNAPMAIL__MQTT__CLEAN_SESSION", "false"),
        ])
        .await;
    r.frigate_event("before", 0).await;
    r.smtp.wait_for_messages(1, T).await;

    // Mosquitto saves the persistent session (snapmail's subscriptions) on the way out.
    r.broker.stop_graceful();
    d.wait_for_log("mqtt: connection to", T).await;
    // Long enough for the daemon's reconnect backoff to grow past a second.
    wait_until("two failed reconnects", T, || {
        d.count_log("still cannot connect") >= 2
    })
    .await;
    r.broker.restart();
    // Published at QoS 1 before snapmail is back: the broker queues them in its session.
    let cameras: Vec<String> = (1..=5).map(|i| format!("offline{i}")).collect();
    for (i, cam) in cameras.iter().enumerate() {
        r.frigate_event(cam, i + 1).await;
    }
    assert_eq!(
        d.count_log("mqtt: connected"),
        1,
        "the events went out while snapmail was still disconnected"
    );
    let mails = r.smtp.wait_for_messages(6, T).await;
    let got = subjects(&mails);
    for cam in &cameras {
        assert!(got.contains(&subject(cam)), "{cam} missing from {got:?}");
    }
    assert!(
        d.logs().contains("session_present=true"),
        "the broker kept the session:\n{}",
        d.logs()
    );
    // After the reconnect, live events still arrive (the subscriptions are in place).
    r.frigate_event("after", 99).await;
    let mails = r.smtp.wait_for_messages(7, T).await;
    assert!(subjects(&mails).contains(&subject("after")));
    assert_eq!(mails.len(), 7, "no duplicates: {:?}", subjects(&mails));
    assert_running(&mut d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queued_while_smtp_is_down_goes_out_when_it_is_back() {
    let r = rig::start(640, 360).await;
    let mut d = r
        .daemon(&[
            ("SNAPMAIL__OUTBOX__RETRY_MIN", "500ms"),
            ("SNAPMAIL__OUTBOX__RETRY_MAX", "1s"),
        ])
        .await;
    r.smtp.set_down(true);
    let cameras: Vec<String> = (0..20).map(|i| format!("cam{i:02}")).collect();
    for (i, cam) in cameras.iter().enumerate() {
        r.frigate_event(cam, i).await;
    }
    wait_until("20 mails in the spool", T, || {
        spooled(&d.dir().join("spool")) == 20
    })
    .await;
    // Several retry rounds fail while the server is down.
    wait_until("repeated failures", T, || {
        d.count_log("outbox: send failed") >= 40
    })
    .await;
    assert!(r.smtp.messages().is_empty());
    assert_running(&mut d);

    r.smtp.set_down(false);
    let mails = r.smtp.wait_for_messages(20, T).await;
    let want: BTreeSet<String> = cameras.iter().map(|c| subject(c)).collect();
    assert_eq!(subjects(&mails), want);
    wait_until("an empty spool", T, || spooled(&d.dir().join("spool")) == 0).await;
    assert_eq!(r.smtp.messages().len(), 20, "each mail once");
}

/// Cameras whose mail the log says was queued (`mail queued camera=…`).
fn queued_cameras(logs: &str) -> BTreeSet<String> {
    logs.lines()
        .filter(|l| l.contains("mail queued"))
        .filter_map(|l| {
            let rest = l.split("camera=").nth(1)?;
            Some(
                rest.split_whitespace()
                    .next()?
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_storm_then_restart_mails_everything_queued() {
    let r = rig::start(640, 360).await;
    // Slow sends, so the kill finds mail in the spool.
    r.smtp.set_silent(true);
    let mut d = r.daemon(&[("SNAPMAIL__SMTP__TIMEOUT", "2s")]).await;
    let cameras: Vec<String> = (0..40).map(|i| format!("storm{i:02}")).collect();
    let publisher = {
        let port = r.broker.port;
        let cameras = cameras.clone();
        tokio::spawn(async move {
            for (i, cam) in cameras.iter().enumerate() {
                let payload = rig::NEW
                    .replace(
                        "1731254400.123456-k3v9qz",
                        &format!("1731254400.{i:06}-{cam}"),
                    )
                    .replace("\"driveway\"", &format!("{cam:?}"));
                crate::support::mosquitto::publish_to(
                    port,
                    "frigate/events",
                    payload.as_bytes(),
                    false,
                )
                .await;
            }
        })
    };
    wait_until("some mail queued", T, || d.count_log("mail queued") >= 10).await;
    d.kill9();
    let before = queued_cameras(&d.logs());
    assert!(before.len() >= 10, "{before:?}");
    assert!(
        spooled(&d.dir().join("spool")) > 0,
        "the kill left mail in the spool"
    );
    publisher.await.expect("publisher");

    r.smtp.set_silent(false);
    d.restart();
    d.wait_for_log("outbox: resending messages left in the spool", T)
        .await;
    let want = before.len();
    wait_until("every queued mail delivered", T, || {
        let got = subjects(&r.smtp.messages());
        before.iter().all(|c| got.contains(&subject(c)))
    })
    .await;
    let got = subjects(&r.smtp.messages());
    assert!(got.len() >= want, "{got:?}");
    assert_running(&mut d);
}

/// A directory that runs out of space: a 1 MiB tmpfs when mounting is allowed (root), else
/// `None` and the test simulates the failure by putting a file where the spool should be.
struct TinyDisk {
    path: PathBuf,
    mounted: bool,
}

impl TinyDisk {
    fn new(path: &Path) -> TinyDisk {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(path)
            .output()
            .is_ok_and(|o| o.status.success());
        TinyDisk {
            path: path.to_path_buf(),
            mounted,
        }
    }

    /// Fills the disk, returning the filler file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_is_a_clear_error_and_recovers() {
    let r = rig::start(640, 360).await;
    let dir = tempfile::Builder::new()
        .prefix("snapmail-diskfull-")
        .tempdir()
        .unwrap();
    let spool = dir.path().join("spool");
    let disk = TinyDisk::new(&spool);
    eprintln!(
        "spool: {}",
        if disk.mounted {
            "a 1 MiB tmpfs"
        } else {
            "simulated failure (no mount rights)"
        }
    );
    let mut d = crate::support::daemon::start_in(dir.path(), Some(&r.config()), &[]);
    d.wait_for_log("mqtt: subscribed", T).await;

    // Make writing to the spool fail: a full disk, or (without mount rights) a file where
    // the spool directory was.
    let undo: Box<dyn FnOnce()> = if disk.mounted {
        let filler = disk.fill();
        Box::new(move || std::fs::remove_file(filler).expect("remove filler"))
    } else {
        let away = dir.path().join("spool.away");
        std::fs::rename(&spool, &away).unwrap();
        std::fs::write(&spool, b"not a directory").unwrap();
        let spool = spool.clone();
        Box::new(move || {
            std::fs::remove_file(&spool).unwrap();
            std::fs::rename(&away, &spool).unwrap();
        })
    };
    r.frigate_event("full", 1).await;
    d.wait_for_log("mail NOT queued", T).await;
    let line = d
        .logs()
        .lines()
        .find(|l| l.contains("mail NOT queued"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("outbox.dir") && line.contains("disk is not full"),
        "the error names the setting and the fix: {line}"
    );
    if disk.mounted {
        assert!(line.contains("No space left"), "{line}");
    }
    assert_running(&mut d);
    assert!(r.smtp.messages().is_empty());

    // Space returns: the next event is mailed.
    undo();
    r.frigate_event("recovered", 2).await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(mails[0].header("Subject"), Some(subject("recovered")));
    assert_running(&mut d);
    d.terminate();
    d.wait_exit(T).await;
    drop(disk);
}
