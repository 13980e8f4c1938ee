//! Policy decisions driven by an injected clock: no sleeping, exact times.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::event::{Control, ControlAction};

fn config(yaml: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, yaml).unwrap();
    crate::config::load_from(Some(&p), Some(HashMap::new())).unwrap()
}

fn policy(yaml: &str) -> Policy {
    Policy::new(&config(yaml)).unwrap()
}

fn ev(id: &str, camera: &str, label: &str) -> Event {
    let mut e = Event::new("test", id, camera);
    e.label = Some(label.into());
    e.score = Some(0.9);
    e
}

/// Monday 2026-11-23 20:00 UTC.
fn t0() -> Now {
    Now {
        mono: Instant::now(),
        wall: "2026-11-23T20:00:00Z".parse().unwrap(),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const MAIL: Decision = Decision::Mail { priority: false };

#[test]
fn one_mail_per_id_and_cooldown_per_camera() {
    let mut p = policy("rate_limit: {cooldown: 60s}\ncameras:\n  driveway: {cooldown: 10m}\n");
    let t = t0();
    assert_eq!(p.decide(&ev("a", "driveway", "person"), t), MAIL);
    assert_eq!(
        p.decide(&ev("a", "driveway", "person"), t),
        Decision::Duplicate
    );
    assert_eq!(
        p.decide(&ev("b", "driveway", "person"), t.after(secs(100))),
        Decision::Suppressed {
            limit: Limit::Cooldown,
            wait: secs(500),
            digest: true
        }
    );
    assert_eq!(p.decide(&ev("c", "garden", "person"), t), MAIL);
    assert!(matches!(
        p.decide(&ev("d", "garden", "person"), t.after(secs(59))),
        Decision::Suppressed { limit: Limit::Cooldown, wait, .. } if wait == secs(1)
    ));
    assert_eq!(
        p.decide(&ev("e", "garden", "person"), t.after(secs(60))),
        MAIL
    );
}

#[test]
fn bucket_refills_and_filtered_events_spend_no_tokens() {
    let mut p = policy(
        "defaults: {cooldown: 0s, burst: 2, interval: 10m, labels: [person]}\ndigest: {enabled: false}\n",
    );
    let t = t0();
    // Filtered events first: they must not touch the bucket.
    for i in 0..5 {
        assert!(matches!(
            p.decide(&ev(&format!("cat{i}"), "door", "cat"), t),
            Decision::Filtered { .. }
        ));
    }
    assert_eq!(p.decide(&ev("1", "door", "person"), t), MAIL);
    assert_eq!(p.decide(&ev("2", "door", "person"), t), MAIL);
    assert_eq!(
        p.decide(&ev("3", "door", "person"), t.after(secs(60))),
        Decision::Suppressed {
            limit: Limit::Bucket,
            wait: secs(540),
            digest: false
        }
    );
    assert_eq!(
        p.decide(&ev("4", "door", "person"), t.after(secs(600))),
        MAIL
    );
    assert!(matches!(
        p.decide(&ev("5", "door", "person"), t.after(secs(601))),
        Decision::Suppressed {
            limit: Limit::Bucket,
            ..
        }
    ));
    assert_eq!(
        p.decide(&ev("6", "door", "person"), t.after(secs(1200))),
        MAIL
    );
}

#[test]
fn digest_goes_out_when_the_camera_may_mail_again() {
    let mut p = policy("defaults: {cooldown: 5m}\n");
    let t = t0();
    assert_eq!(p.decide(&ev("first", "driveway", "person"), t), MAIL);
    // Nothing suppressed yet: no digest, ever.
    assert!(p.tick(t.after(secs(301))).digests.is_empty());
    let t = t.after(secs(400)); // cooldown free again
    assert_eq!(p.decide(&ev("x", "driveway", "person"), t), MAIL);
    let labels = [
        "person", "car", "person", "person", "car", "person", "person",
    ];
    for (i, l) in labels.iter().enumerate() {
        let d = p.decide(
            &ev(&format!("s{i}"), "driveway", l),
            t.after(secs(10 + i as u64)),
        );
        assert!(matches!(
            d,
            Decision::Suppressed {
                limit: Limit::Cooldown,
                digest: true,
                ..
            }
        ));
    }
    assert!(p.tick(t.after(secs(299))).digests.is_empty());
    let out = p.tick(t.after(secs(300)));
    assert_eq!(out.digests.len(), 1);
    let d = &out.digests[0];
    assert_eq!(d.count, 7);
    assert_eq!(
        d.labels,
        vec![("person".to_string(), 5), ("car".to_string(), 2)]
    );
    assert_eq!(d.samples.len(), 6);
    assert!(d.headline().starts_with("7 more events on driveway since "));
    assert!(d.headline().ends_with(" — 5 person, 2 car"));
    // The digest used the camera's cooldown slot, and nothing is left to digest.
    assert!(p.tick(t.after(secs(900))).digests.is_empty());
    assert!(matches!(
        p.decide(&ev("y", "driveway", "person"), t.after(secs(301))),
        Decision::Suppressed {
            limit: Limit::Cooldown,
            ..
        }
    ));
}

#[test]
fn digest_max_delay_caps_the_wait() {
    let mut p = policy("defaults: {cooldown: 1h}\ndigest: {max_delay: 10m, max_images: 2}\ntimezone: Europe/Berlin\n");
    let t = t0();
    assert_eq!(p.decide(&ev("a", "yard", "person"), t), MAIL);
    p.decide(&ev("b", "yard", "car"), t.after(secs(180)));
    p.decide(&ev("c", "yard", "car"), t.after(secs(200)));
    p.decide(&ev("d", "yard", "dog"), t.after(secs(220)));
    assert!(p.tick(t.after(secs(180 + 599))).digests.is_empty());
    let out = p.tick(t.after(secs(180 + 600)));
    assert_eq!(out.digests.len(), 1);
    let d = &out.digests[0];
    assert_eq!(d.count, 3);
    assert_eq!(d.samples.len(), 2);
    // 20:03 UTC is 21:03 in Berlin.
    assert_eq!(
        d.headline(),
        "3 more events on yard since 21:03 — 2 car, 1 dog"
    );
}

#[test]
fn daily_budget_stops_everything_until_the_window_rolls() {
    let mut p =
        policy("daily_limit: 3\ndefaults: {cooldown: 0s}\npriority: [{labels: [person]}]\n");
    let t = t0();
    for i in 0..3 {
        assert!(matches!(
            p.decide(
                &ev(&i.to_string(), &format!("cam{i}"), "person"),
                t.after(secs(i))
            ),
            Decision::Mail { .. }
        ));
    }
    // Priority skips cooldown and bucket, never the daily budget.
    let d = p.decide(&ev("p", "cam0", "person"), t.after(secs(3600)));
    assert_eq!(
        d,
        Decision::Suppressed {
            limit: Limit::Daily,
            wait: secs(24 * 3600 - 3600),
            digest: true
        }
    );
    // The digest waits for the budget as well.
    assert!(p.tick(t.after(secs(24 * 3600 - 1))).digests.is_empty());
    let out = p.tick(t.after(secs(24 * 3600)));
    assert_eq!(out.digests.len(), 1);
    assert_eq!(out.digests[0].count, 1);
    // The first send left the window, the digest took that slot: full again until the 2nd leaves.
    assert!(matches!(
        p.decide(&ev("q", "cam1", "person"), t.after(secs(24 * 3600))),
        Decision::Suppressed {
            limit: Limit::Daily,
            ..
        }
    ));
    assert!(matches!(
        p.decide(&ev("r", "cam1", "person"), t.after(secs(24 * 3600 + 1))),
        Decision::Mail { .. }
    ));
}

#[test]
fn priority_rule_skips_cooldown_inside_its_window() {
    let mut p = policy(
        "timezone: Europe/Berlin\nschedules:\n  night: {from: '22:00', to: '06:00'}\ndefaults: {cooldown: 1h}\npriority:\n  - {cameras: [door], labels: [person], during: night}\n",
    );
    let evening = t0(); // 21:00 Berlin
    assert_eq!(p.decide(&ev("a", "door", "person"), evening), MAIL);
    assert!(matches!(
        p.decide(&ev("b", "door", "person"), evening.after(secs(600))),
        Decision::Suppressed { .. }
    ));
    let night = evening.after(secs(3600 + 60)); // 22:01
    assert_eq!(
        p.decide(&ev("c", "door", "person"), night),
        Decision::Mail { priority: true }
    );
    // The priority mail did not use the cooldown slot: the 21:00 mail's hour is over.
    assert_eq!(
        p.decide(&ev("d", "door", "car"), night.after(secs(1))),
        MAIL
    );
    assert!(matches!(
        p.decide(&ev("e", "door", "car"), night.after(secs(2))),
        Decision::Suppressed {
            limit: Limit::Cooldown,
            ..
        }
    ));
}

#[test]
fn active_and_quiet_windows_with_digest_afterwards() {
    let mut p = policy(
        "timezone: Europe/Berlin\nschedules:\n  night: {from: '22:00', to: '06:00'}\n  dinner: {from: '20:30', to: '21:30'}\ncameras:\n  backyard: {active: [night]}\n  kitchen: {quiet: [dinner], quiet_digest: true, cooldown: 0s}\n",
    );
    let t = t0(); // Monday 21:00 Berlin
    assert!(matches!(
        p.decide(&ev("a", "backyard", "person"), t),
        Decision::Filtered { ref rule, digest: false } if rule.to_string().contains("active")
    ));
    assert_eq!(
        p.decide(&ev("b", "backyard", "person"), t.after(secs(3600))),
        MAIL
    );
    assert_eq!(
        p.decide(&ev("c", "kitchen", "person"), t),
        Decision::Filtered {
            rule: Rule::Quiet {
                window: "dinner".into()
            },
            digest: true
        }
    );
    assert!(p.tick(t.after(secs(1799))).digests.is_empty());
    let out = p.tick(t.after(secs(1800))); // 21:30: the window is over
    assert_eq!(out.digests.len(), 1);
    assert_eq!(out.digests[0].camera, "kitchen");
}

#[test]
fn snooze_expires_and_disarm_filters() {
    let mut p = policy("defaults: {cooldown: 0s}\ncameras:\n  garage: {}\n");
    let t = t0();
    let snooze = Control {
        camera: Some("garage".into()),
        action: ControlAction::Snooze(secs(600)),
    };
    assert_eq!(p.control(&snooze, t), vec!["garage".to_string()]);
    assert!(matches!(
        p.decide(&ev("a", "garage", "person"), t.after(secs(599))),
        Decision::Filtered { ref rule, .. } if rule.to_string().starts_with("snoozed until")
    ));
    let out = p.tick(t.after(secs(600)));
    assert_eq!(out.woke, vec!["garage".to_string()]);
    let state = p.state_messages(Some(&out.woke), t.after(secs(600)));
    assert_eq!(state[0].topic, "snapmail/garage/state");
    assert!(String::from_utf8_lossy(&state[0].payload).contains("\"armed\""));
    assert_eq!(
        p.decide(&ev("b", "garage", "person"), t.after(secs(600))),
        MAIL
    );

    let off = Control {
        camera: None,
        action: ControlAction::Arm(false),
    };
    p.control(&off, t);
    assert!(matches!(
        p.decide(&ev("c", "street", "person"), t.after(secs(700))),
        Decision::Filtered { ref rule, .. } if rule.to_string().contains("disarmed")
    ));
}

#[tokio::test]
async fn arm_state_and_budget_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let yaml = "daily_limit: 2\ndefaults: {cooldown: 0s}\ncameras:\n  garage: {}\n  door: {}\n";
    let t = t0();
    let mut p = policy(yaml);
    p.control(
        &Control {
            camera: Some("garage".into()),
            action: ControlAction::Arm(false),
        },
        t,
    );
    assert_eq!(p.decide(&ev("a", "door", "person"), t), MAIL);
    assert!(p.take_dirty());
    save_state(&file, &p.state()).await.unwrap();

    let mut again = policy(yaml);
    again.restore(load_state(&file).await.unwrap().unwrap());
    assert!(matches!(
        again.decide(&ev("b", "garage", "person"), t.after(secs(5))),
        Decision::Filtered { .. }
    ));
    assert_eq!(
        again.decide(&ev("c", "door", "person"), t.after(secs(5))),
        MAIL
    );
    // One mail before the restart and one after: the budget of 2 is used up.
    assert!(matches!(
        again.decide(&ev("d", "door", "person"), t.after(secs(10))),
        Decision::Suppressed {
            limit: Limit::Daily,
            ..
        }
    ));
    let msgs = again.state_messages(None, t);
    assert!(msgs.iter().any(|m| m.topic == "snapmail/garage/state"
        && String::from_utf8_lossy(&m.payload).contains("disarmed")));
    // A broken file is reported with the key, not a panic.
    std::fs::write(&file, "{not json").unwrap();
    assert!(load_state(&file)
        .await
        .unwrap_err()
        .starts_with("control.state_file:"));
}

#[test]
fn a_review_and_its_detection_event_mail_once() {
    let mut p = policy("defaults: {cooldown: 0s}\n");
    let t = t0();
    // The review arrives first, naming its detection events…
    let mut review = ev("review-1", "driveway", "person");
    review.related_ids = vec!["det-1".into(), "det-2".into()];
    assert_eq!(p.decide(&review, t), MAIL);
    // …then the event source reports one of them, and the review is updated.
    assert_eq!(
        p.decide(&ev("det-2", "driveway", "person"), t.after(secs(1))),
        Decision::Duplicate
    );
    let mut update = ev("review-1", "driveway", "person");
    update.related_ids = vec!["det-1".into(), "det-2".into(), "det-3".into()];
    assert_eq!(p.decide(&update, t.after(secs(2))), Decision::Duplicate);
    assert_eq!(
        p.decide(&ev("det-3", "driveway", "person"), t.after(secs(3))),
        Decision::Duplicate
    );
    // The other way round: event first, then the review that contains it.
    assert_eq!(p.decide(&ev("det-9", "yard", "car"), t), MAIL);
    let mut review2 = ev("review-2", "yard", "car");
    review2.related_ids = vec!["det-9".into()];
    assert_eq!(p.decide(&review2, t.after(secs(1))), Decision::Duplicate);
    // A retained replay after a reconnect is the same id again.
    assert_eq!(
        p.decide(&ev("det-9", "yard", "car"), t.after(secs(60))),
        Decision::Duplicate
    );
}

#[test]
fn cameras_only_ignores_unlisted_cameras() {
    let mut p = policy("cameras_only: true\ncameras:\n  door: {}\n");
    assert_eq!(
        p.decide(&ev("a", "street", "person"), t0()),
        Decision::Unlisted
    );
    assert_eq!(p.decide(&ev("b", "door", "person"), t0()), MAIL);
}

async fn next(rx: &mut mpsc::Receiver<Outgoing>) -> Outgoing {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a message in time")
        .expect("channel open")
}

#[tokio::test]
async fn stage_republishes_state_on_every_connection_and_saves_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let p = policy("cameras:\n  garage: {}\n  door: {}\n");
    let (in_tx, in_rx) = mpsc::channel(8);
    let (mail_tx, _mail_rx) = mpsc::channel(8);
    let (digest_tx, _digest_rx) = mpsc::channel(8);
    let (pub_tx, mut pub_rx) = mpsc::channel(16);
    let (conn_tx, conn_rx) = watch::channel(0u64);
    let stage = tokio::spawn(run(
        p,
        in_rx,
        Links {
            mail: mail_tx,
            digests: digest_tx,
            publish: Some(pub_tx),
            connections: Some(conn_rx),
            state_file: Some(file.clone()),
        },
    ));
    // First connection: every configured camera's state, retained.
    conn_tx.send_modify(|n| *n += 1);
    let mut topics = vec![next(&mut pub_rx).await.topic, next(&mut pub_rx).await.topic];
    topics.sort();
    assert_eq!(topics, ["snapmail/door/state", "snapmail/garage/state"]);
    // A command changes one camera: its state goes out and the file is written.
    in_tx
        .send(Input::Control(Control {
            camera: Some("garage".into()),
            action: ControlAction::Arm(false),
        }))
        .await
        .unwrap();
    let m = next(&mut pub_rx).await;
    assert_eq!(m.topic, "snapmail/garage/state");
    assert!(m.retain);
    assert!(String::from_utf8_lossy(&m.payload).contains("disarmed"));
    // A reconnection publishes everything again.
    conn_tx.send_modify(|n| *n += 1);
    let again: Vec<Outgoing> = vec![next(&mut pub_rx).await, next(&mut pub_rx).await];
    assert!(again.iter().any(|m| m.topic == "snapmail/garage/state"
        && String::from_utf8_lossy(&m.payload).contains("disarmed")));
    drop(in_tx);
    stage.await.unwrap();
    let saved: StateFile = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(!saved.arm.get("garage").armed);
    assert!(saved.arm.get("door").armed);
}
