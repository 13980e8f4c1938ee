//! The outbox under Gmail's failure modes, with the real binary and the SMTP test server's
//! fault injection: nothing is lost, nothing is sent twice (beyond the one message that can
//! be in flight at a crash), and bad logins do not hammer the server.

use std::collections::HashSet;

use mail_parser::MimeHeaders;
use std::time::{Duration, Instant};

use crate::support::daemon::Daemon;
use crate::support::rig::{self, spooled, T};
use crate::support::smtp::Fault;
use crate::support::wait::wait_until;

fn unique_ids(mails: &[crate::support::smtp::ReceivedMail]) -> HashSet<String> {
    mails.iter().filter_map(|m| m.message_id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_each_mail_arrives_once() {
    let r = rig::start(640, 360).await;
    r.smtp.inject(
        Fault::Greeting("421 4.7.0 Try again later, closing connection.".into()),
        2,
    );
    r.smtp.inject(
        Fault::DataEnd("451 4.3.0 Mail server temporarily rejected message.".into()),
        1,
    );
    r.smtp.inject(Fault::DropMidData, 1);
    let d = r.daemon(&[]).await;
    for (n, cam) in ["a", "b", "c"].iter().enumerate() {
        r.frigate_event(cam, n).await;
    }
    let mails = r.smtp.wait_for_messages(3, T).await;
    assert_eq!(unique_ids(&mails).len(), 3, "three distinct messages");
    d.wait_for_log("421 4.7.0", T).await;
    d.wait_for_log("451 4.3.0", T).await;
    assert!(
        r.smtp.transcript().contains("[data: dropped after"),
        "the connection was dropped partway through a message body"
    );
    wait_until("the spool to empty", T, || {
        spooled(&d.dir().join("spool")) == 0
    })
    .await;
    assert_eq!(
        r.smtp.messages().len(),
        3,
        "each exactly once:\n{}",
        d.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_then_up_delivers_everything() {
    let r = rig::start(640, 360).await;
    r.smtp.set_down(true);
    let d = r.daemon(&[]).await;
    r.frigate_event("a", 1).await;
    r.frigate_event("b", 2).await;
    d.wait_for_log("outbox: send failed", T).await;
    assert!(r.smtp.messages().is_empty());
    r.smtp.set_down(false);
    let mails = r.smtp.wait_for_messages(2, T).await;
    assert_eq!(unique_ids(&mails).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_quota_pauses_sending_and_resumes_after_the_pause() {
    let r = rig::start(640, 360).await;
    r.smtp.inject(
        Fault::DataEnd(
            "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n\
             550-5.4.5 sending limits go to\n\
             550 5.4.5  https://support.google.com/a/answer/166852"
                .into(),
        ),
        1,
    );
    let d = r.daemon(&[("SNAPMAIL__OUTBOX__QUOTA_PAUSE", "4s")]).await;
    r.frigate_event("a", 1).await;
    d.wait_for_log("Sending pauses for 4s", T).await;
    let paused_at = Instant::now();
    // The queue grows while paused.
    r.frigate_event("b", 2).await;
    r.frigate_event("c", 3).await;
    wait_until("three messages in the spool", T, || {
        spooled(&d.dir().join("spool")) == 3
    })
    .await;
    assert!(r.smtp.messages().is_empty());
    let mails = r.smtp.wait_for_messages(3, T).await;
    assert!(
        paused_at.elapsed() >= Duration::from_secs(3),
        "sending resumed only after the pause"
    );
    assert_eq!(unique_ids(&mails).len(), 3);
    d.wait_for_log("sending resumed", T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_probe_once_per_pause_instead_of_hammering() {
    let r = rig::start(640, 360).await;
    let d = r
        .daemon(&[
            ("SNAPMAIL__SMTP__PASSWORD", "wrongwrongwrongw"),
            ("SNAPMAIL__OUTBOX__CREDENTIALS_PAUSE", "2s"),
        ])
        .await;
    for (n, cam) in ["a", "b", "c", "d"].iter().enumerate() {
        r.frigate_event(cam, n).await;
    }
    wait_until("three AUTH attempts", T, || r.smtp.auth_attempts() >= 3).await;
    let times = r.smtp.auth_attempt_times();
    for pair in times.windows(2).take(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(1900),
            "AUTH attempts {gap:?} apart:\n{}",
            d.logs()
        );
    }
    assert_eq!(
        d.count_log("LOGIN REFUSED"),
        1,
        "the fix is logged loudly once"
    );
    assert!(r.smtp.messages().is_empty());
    assert_eq!(
        spooled(&d.dir().join("spool")),
        4,
        "queued mail waits, it is not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_50_queued_then_restart_delivers_all() {
    let r = rig::start(320, 180).await;
    r.smtp.set_down(true);
    let mut d = r.daemon(&[]).await;
    for n in 0..50 {
        r.frigate_event(&format!("cam{n:02}"), n).await;
    }
    let spool = d.dir().join("spool");
    wait_until("50 messages in the spool", T, || spooled(&spool) == 50).await;
    d.kill9();
    r.smtp.set_down(false);
    let dir = d.dir().to_owned();
    let config = r.config();
    let restarted = Daemon::start_in(&dir, Some(&config), &[]);
    let mails = r.smtp.wait_for_messages(50, Duration::from_secs(60)).await;
    wait_until("the spool to empty", T, || spooled(&spool) == 0).await;
    let ids = unique_ids(&mails);
    assert_eq!(ids.len(), 50, "all 50 arrive");
    assert!(
        mails.len() <= 51,
        "no duplicates beyond the one in flight: {}",
        mails.len()
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_send_in_flight_exits_0_and_the_next_start_delivers() {
    let r = rig::start(320, 180).await;
    r.smtp.set_silent(true);
    let mut d = r.daemon(&[("SNAPMAIL__SHUTDOWN_TIMEOUT", "2s")]).await;
    r.frigate_event("a", 1).await;
    wait_until("a message in the spool", T, || {
        spooled(&d.dir().join("spool")) == 1
    })
    .await;
    wait_until("the send to be in flight", T, || r.smtp.connections() >= 1).await;
    d.terminate();
    assert_eq!(d.wait_exit(T).await, Some(0), "{}", d.logs());
    assert_eq!(
        spooled(&d.dir().join("spool")),
        1,
        "the unsent mail stays in the spool"
    );
    r.smtp.set_silent(false);
    let dir = d.dir().to_owned();
    let _again = Daemon::start_in(&dir, Some(&r.config()), &[]);
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert_eq!(mails.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_reencoded_to_fit() {
    let r = rig::start(3840, 2160).await;
    let d = r
        .daemon(&[
            ("SNAPMAIL__SMTP__MAX_MESSAGE_BYTES", "90000"),
            ("SNAPMAIL__SNAPSHOT__MAX_IMAGE_BYTES", "5000000"),
            ("SNAPMAIL__SNAPSHOT__JPEG_QUALITY", "95"),
        ])
        .await;
    r.frigate_event("a", 1).await;
    let mails = r.smtp.wait_for_messages(1, T).await;
    assert!(
        mails[0].data.len() <= 90_000,
        "{} bytes",
        mails[0].data.len()
    );
    d.wait_for_log("re-encoding the picture", T).await;
    let msg = mail_parser::MessageParser::default()
        .parse(&mails[0].data)
        .unwrap();
    let jpeg = msg
        .parts
        .iter()
        .find(|p| p.content_type().is_some_and(|c| c.ctype() == "image"))
        .expect("the picture is still there")
        .contents()
        .to_vec();
    let (w, h) = crate::support::images::decode_dims(&jpeg);
    assert!(w > 0 && h > 0);
}
