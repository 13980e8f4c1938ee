//! The delivery loop: sends spooled messages, retries by reply class, pauses for quota and
//! credential failures, and stops cleanly on shutdown.
//!
//! | failure                        | what happens                                             |
//! |--------------------------------|----------------------------------------------------------|
//! | network, TLS, timeout, 4xx     | retry with jittered exponential backoff until `max_age`  |
//! | 550 5.4.5 (daily quota)        | pause all sending for `quota_pause`, keep queuing        |
//! | 534 / 535 (login refused)      | pause all sending, say the fix once, probe every `credentials_pause` |
//! | other 5xx, 552 (too large)     | move to `dead/` with the reason                          |
//!
//! At start and after a pause only one message is sent (a probe) until one succeeds, so a wrong
//! password costs one login per `credentials_pause`, not one per queued mail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::address::{Address, Envelope};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::spool::{Entry, Spool};
use super::{Fresh, Queued};
use crate::backoff::Backoff;
use crate::mail::{Accepted, Class, Failure, Mailer};
use crate::metrics::OutboxStats;

/// Timing knobs of the delivery loop (from `outbox.*`).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub max_age: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub quota_pause: Duration,
    pub credentials_pause: Duration,
    pub shutdown_timeout: Duration,
    pub max_in_flight: usize,
}

struct Pending {
    due: Instant,
    backoff: Backoff,
    created: u64,
    /// The message in memory until its first attempt takes it; later attempts read the spool.
    fresh: Option<Fresh>,
}

enum Outcome {
    Sent(Accepted),
    Failed {
        failure: Failure,
        age: Duration,
    },
    /// The spool file vanished or could not be read.
    Unreadable(String),
}

/// Run until `shutdown` flips, then let in-flight sends finish for up to `shutdown_timeout`.
pub async fn run(
    spool: Spool,
    mailer: Mailer,
    settings: DeliverySettings,
    stats: Arc<OutboxStats>,
    mut new_rx: mpsc::Receiver<Queued>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    // (due, id) of every pending message not being sent right now, so the next one to send
    // and the next wake-up are found without walking the whole queue.
    let mut ready: BTreeSet<(Instant, String)> = BTreeSet::new();
    let now = Instant::now();
    match spool.list() {
        Ok(ids) => {
            if !ids.is_empty() {
                info!(count = ids.len(), dir = %spool.dir().display(), "outbox: resending messages left in the spool");
            }
            for id in ids {
                enqueue(&mut pending, &mut ready, id, None, now, &settings);
            }
        }
        Err(e) => error!("outbox: cannot read the spool: {e}"),
    }
    let mut in_flight: JoinSet<(String, Outcome)> = JoinSet::new();
    // While paused: until when. While probing only one send is in flight: at start (so a
    // wrong password costs one login, not one per connection) and after every pause.
    let mut paused_until: Option<Instant> = None;
    let mut probing = true;
    let mut was_paused = false;
    let mut credentials_told = false;
    let mut producer_open = true;

    loop {
        update_oldest(&stats, &pending);
        let now = Instant::now();
        if paused_until.is_some_and(|t| now >= t) {
            paused_until = None;
        }
        let limit = if probing {
            1
        } else {
            settings.max_in_flight.max(1)
        };
        if paused_until.is_none() {
            while in_flight.len() < limit {
                if ready.first().is_none_or(|(due, _)| *due > now) {
                    break;
                }
                let Some((_, id)) = ready.pop_first() else {
                    break;
                };
                let fresh = pending.get_mut(&id).and_then(|p| p.fresh.take());
                let spool = spool.clone();
                let mailer = mailer.clone();
                in_flight.spawn(async move {
                    let outcome = attempt(&spool, &mailer, &id, fresh).await;
                    (id, outcome)
                });
            }
        }
        let next_wake = paused_until.unwrap_or_else(|| {
            let idle = now + Duration::from_secs(3600);
            if in_flight.len() >= limit {
                // Every connection is busy: a finished send wakes the loop. Waking for a
                // message that is already due would only spin.
                return idle;
            }
            ready.first().map_or(idle, |(due, _)| *due)
        });

        tokio::select! {
            _ = shutdown.changed() => break,
            queued = new_rx.recv(), if producer_open => match queued {
                Some(Queued { id, fresh }) => {
                    enqueue(&mut pending, &mut ready, id, fresh, Instant::now(), &settings)
                }
                // The producer is gone; keep delivering what is queued until shutdown.
                None => producer_open = false,
            },
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok((id, outcome)) = joined {
                    let verdict = handle(&spool, &settings, &stats, &mut pending, &id, outcome, &mut credentials_told).await;
                    // Still queued (a retry, or held by a pause): due again at its `due`.
                    if let Some(p) = pending.get(&id) {
                        ready.insert((p.due, id));
                    }
                    match verdict {
                        Verdict::Continue => {
                            probing = false;
                            if was_paused {
                                info!("outbox: the server accepts mail again; sending resumed");
                                was_paused = false;
                                credentials_told = false;
                            }
                        }
                        Verdict::Pause(d) => {
                            paused_until = Some(Instant::now() + d);
                            probing = true;
                            was_paused = true;
                        }
                        Verdict::Retry => {}
                    }
                }
            }
            _ = tokio::time::sleep_until(next_wake) => {}
        }
    }

    if !in_flight.is_empty() {
        info!(
            in_flight = in_flight.len(),
            "outbox: shutting down; waiting for sends in progress"
        );
        let drain = async {
            while let Some(joined) = in_flight.join_next().await {
                if let Ok((id, outcome)) = joined {
                    let _ = handle(
                        &spool,
                        &settings,
                        &stats,
                        &mut pending,
                        &id,
                        outcome,
                        &mut credentials_told,
                    )
                    .await;
                }
            }
        };
        if tokio::time::timeout(settings.shutdown_timeout, drain)
            .await
            .is_err()
        {
            warn!("outbox: sends still in progress after shutdown_timeout; they stay in the spool and go out on the next start");
        }
    }
    let left = spool.list().map(|l| l.len()).unwrap_or(0);
    info!(left_in_spool = left, "outbox: stopped");
}

impl Pending {
    fn new(id: &str, fresh: Option<Fresh>, now: Instant, s: &DeliverySettings) -> Pending {
        Pending {
            due: now,
            backoff: Backoff::new(s.retry_min, s.retry_max),
            created: created_from_id(id),
            fresh,
        }
    }
}

/// Spool ids start with the creation time in milliseconds.
fn created_from_id(id: &str) -> u64 {
    id.split('.')
        .next()
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| ms / 1000)
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// Queue a spooled message for sending now.
fn enqueue(
    pending: &mut BTreeMap<String, Pending>,
    ready: &mut BTreeSet<(Instant, String)>,
    id: String,
    fresh: Option<Fresh>,
    now: Instant,
    settings: &DeliverySettings,
) {
    let p = Pending::new(&id, fresh, now, settings);
    if let Some(old) = pending.insert(id.clone(), p) {
        ready.remove(&(old.due, id.clone()));
    }
    ready.insert((now, id));
}

fn update_oldest(stats: &OutboxStats, pending: &BTreeMap<String, Pending>) {
    // Spool ids start with the creation time, so the first id is the oldest message.
    let oldest = pending.values().next().map_or(0, |p| p.created);
    stats
        .oldest_created
        .store(oldest, std::sync::atomic::Ordering::Relaxed);
}

async fn attempt(spool: &Spool, mailer: &Mailer, id: &str, fresh: Option<Fresh>) -> Outcome {
    // A fresh message keeps its share of the in-memory allowance until the send is over.
    let loaded: Entry;
    let entry = match &fresh {
        Some(fresh) => &fresh.entry,
        None => {
            let spool = spool.clone();
            let id = id.to_owned();
            loaded = match tokio::task::spawn_blocking(move || spool.load(&id)).await {
                Ok(Ok(e)) => e,
                Ok(Err(e)) => return Outcome::Unreadable(e.to_string()),
                Err(e) => return Outcome::Unreadable(e.to_string()),
            };
            &loaded
        }
    };
    let envelope = match envelope(entry) {
        Ok(e) => e,
        Err(why) => return Outcome::Unreadable(why),
    };
    let age = entry.age(SystemTime::now());
    debug!(id, "outbox: sending");
    match mailer.send_raw(&envelope, &entry.bytes).await {
        Ok(acc) => Outcome::Sent(acc),
        Err(failure) => Outcome::Failed { failure, age },
    }
}

fn envelope(entry: &Entry) -> Result<Envelope, String> {
    let from: Address = entry
        .meta
        .from
        .parse()
        .map_err(|e| format!("bad sender {:?}: {e}", entry.meta.from))?;
    let to = entry
        .meta
        .to
        .iter()
        .map(|t| {
            t.parse::<Address>()
                .map_err(|e| format!("bad recipient {t:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| e.to_string())
}

enum Verdict {
    Continue,
    Retry,
    Pause(Duration),
}

async fn handle(
    spool: &Spool,
    settings: &DeliverySettings,
    stats: &OutboxStats,
    pending: &mut BTreeMap<String, Pending>,
    id: &str,
    outcome: Outcome,
    credentials_told: &mut bool,
) -> Verdict {
    let blocking = |f: Box<dyn FnOnce() -> Result<(), String> + Send>| async move {
        tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    match outcome {
        Outcome::Sent(acc) => {
            crate::metrics::metrics().smtp_reply(Some(acc.code));
            crate::metrics::metrics().set_sending_blocked(None);
            // Delete only now: the server has answered 250 to the end of DATA.
            let s = spool.clone();
            let owned = id.to_owned();
            if let Err(e) = blocking(Box::new(move || {
                s.remove(&owned).map_err(|e| e.to_string())
            }))
            .await
            {
                error!(id, "outbox: delivered, but cannot remove it from the spool ({e}); it may be sent twice");
            }
            pending.remove(id);
            OutboxStats::bump(&stats.sent);
            stats.last_sent.store(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
            stats.depth_sub(1);
            info!(id, "outbox: delivered: {} {}", acc.code, acc.text);
            Verdict::Continue
        }
        Outcome::Unreadable(why) => {
            error!(
                id,
                "outbox: cannot read the spooled message: {why}; moving it to dead/"
            );
            bury(spool, stats, pending, id, &why).await;
            Verdict::Retry
        }
        Outcome::Failed { failure, age } => {
            crate::metrics::metrics().smtp_reply(failure.code);
            handle_failure(
                spool,
                settings,
                stats,
                pending,
                id,
                failure,
                age,
                credentials_told,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle_failure(
    spool: &Spool,
    settings: &DeliverySettings,
    stats: &OutboxStats,
    pending: &mut BTreeMap<String, Pending>,
    id: &str,
    failure: Failure,
    age: Duration,
    credentials_told: &mut bool,
) -> Verdict {
    match failure.class {
        Class::Transient => {
            let Some(p) = pending.get_mut(id) else {
                return Verdict::Retry;
            };
            if age >= settings.max_age {
                error!(
                    id,
                    "outbox: giving up after {} of retries: {failure}",
                    humantime::format_duration(settings.max_age)
                );
                bury(spool, stats, pending, id, &failure.to_string()).await;
                return Verdict::Retry;
            }
            let delay = p.backoff.next_delay();
            p.due = Instant::now() + delay;
            OutboxStats::bump(&stats.retried);
            warn!(
                id,
                attempt = p.backoff.attempts(),
                "outbox: send failed: {failure}; retrying in {:.0}s",
                delay.as_secs_f64().ceil()
            );
            Verdict::Retry
        }
        Class::Credentials | Class::Certificate => {
            let (what, health) = if failure.class == Class::Credentials {
                OutboxStats::bump(&stats.paused_credentials);
                (
                    "LOGIN REFUSED",
                    "sending is blocked: the SMTP server refused the login (check smtp.password)",
                )
            } else {
                (
                    "TLS CERTIFICATE REFUSED",
                    "sending is blocked: the SMTP server's TLS certificate is not trusted (check smtp.ca_file and smtp.host)",
                )
            };
            crate::metrics::metrics().set_sending_blocked(Some(health));
            if !*credentials_told {
                error!(
                    "outbox: {what} — {failure}. Sending is paused; queued mail is kept and sending is tried again every {}",
                    humantime::format_duration(settings.credentials_pause)
                );
                *credentials_told = true;
            } else {
                warn!(
                    "outbox: still refused ({}); next try in {}",
                    failure
                        .code
                        .map_or_else(|| failure.hint.to_owned(), |c| c.to_string()),
                    humantime::format_duration(settings.credentials_pause)
                );
            }
            Verdict::Pause(settings.credentials_pause)
        }
        Class::Quota => {
            OutboxStats::bump(&stats.paused_quota);
            warn!(
                "outbox: {failure}. Sending pauses for {}; new mail keeps queuing",
                humantime::format_duration(settings.quota_pause)
            );
            Verdict::Pause(settings.quota_pause)
        }
        Class::TooLarge | Class::Permanent => {
            error!(
                id,
                "outbox: the server refused this message for good: {failure}; moving it to dead/"
            );
            bury(spool, stats, pending, id, &failure.to_string()).await;
            Verdict::Retry
        }
    }
}

async fn bury(
    spool: &Spool,
    stats: &OutboxStats,
    pending: &mut BTreeMap<String, Pending>,
    id: &str,
    reason: &str,
) {
    let s = spool.clone();
    let owned = id.to_owned();
    let reason = reason.to_owned();
    match tokio::task::spawn_blocking(move || s.bury(&owned, &reason)).await {
        Ok(Ok(path)) => info!(id, "outbox: moved to {}", path.display()),
        Ok(Err(e)) => error!(id, "outbox: cannot move the message to dead/: {e}"),
        Err(e) => error!(id, "outbox: cannot move the message to dead/: {e}"),
    }
    pending.remove(id);
    OutboxStats::bump(&stats.dead);
    stats.depth_sub(1);
}
