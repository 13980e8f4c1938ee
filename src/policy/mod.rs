//! Policy: decides, for each event, whether it becomes a mail, goes into a digest, or is
//! dropped — and why.
//!
//! The order of the checks is: camera listed (`cameras_only`) → dedup (event id plus a
//! review's related ids) → armed / snoozed → filters → schedule (`active`, `quiet`) →
//! daily budget → cooldown and token bucket (skipped for `priority` matches). Limits are
//! only spent when a mail is really queued.
//!
//! [`Policy`] is a pure state machine: every call gets the time as a [`Now`], so tests
//! drive bucket refills, cooldowns, budgets, digests, schedules and snoozes with an
//! injected clock. The stage task ([`run`]) adds the I/O: one log line per decision, the
//! digest timer, the retained state topics and the state file.

mod bucket;
mod budget;
pub(crate) mod control;
mod cooldown;
mod dedup;
mod digest;
mod filter;
mod rule;
mod schedule;
mod settings;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::event::Event;
use crate::event::{Control, ControlAction, Input};
use crate::mqtt::Outgoing;
use crate::state_file::StateFileError;
use bucket::Buckets;
use budget::{DailyBudget, Level};
use control::{ArmState, StateFile, Status};
use cooldown::Cooldown;
use dedup::Dedup;
pub use digest::Digest;
use digest::Pending;
pub use rule::Rule;
pub use settings::Settings;

/// One clock reading: monotonic for limits and timers, wall-clock for schedules, snoozes
/// and the daily budget (which must survive restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall: Timestamp,
}

impl Now {
    /// The real time (tokio's clock for the monotonic part, so paused-clock tests work).
    pub fn system() -> Now {
        Now {
            mono: tokio::time::Instant::now().into_std(),
            wall: Timestamp::now(),
        }
    }

    /// This reading moved `d` forward on both clocks.
    #[cfg(test)]
    pub fn after(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

/// Which limit held an event back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Cooldown,
    Bucket,
    Daily,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::Cooldown => "cooldown",
            Limit::Bucket => "rate limit (burst/interval)",
            Limit::Daily => "daily_limit",
        }
    }
}

/// What the policy made of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go ahead and mail it (`priority`: a priority rule let it skip cooldown and bucket).
    Mail { priority: bool },
    /// Already decided for this id (a later `update`/`end`, a replay, or the same happening
    /// reported as a review and as an event).
    Duplicate,
    /// A camera not listed under `cameras` while `cameras_only` is set.
    Unlisted,
    /// Dropped by a rule (filter, disarm, snooze, schedule).
    /// `digest`: kept for the digest after a quiet window.
    Filtered { rule: Rule, digest: bool },
    /// Held back by a limit; the camera may mail again after `wait`.
    /// `digest`: counted in the camera's next digest.
    Suppressed {
        limit: Limit,
        wait: Duration,
        digest: bool,
    },
}

/// The policy stage's state.
pub struct Policy {
    settings: Settings,
    dedup: Dedup,
    cooldown: Cooldown,
    buckets: Buckets,
    bucket_ready: HashMap<String, Instant>,
    budget: DailyBudget,
    budget_stopped: bool,
    arm: ArmState,
    pending: BTreeMap<String, Pending>,
    /// Cameras the state topics are published for.
    known: BTreeSet<String>,
    /// The state file needs writing.
    dirty: bool,
}

impl Policy {
    /// The policy for `config` alone (tests; the daemon gets its settings from the plan).
    #[cfg(test)]
    pub fn new(config: &crate::config::Config) -> Result<Policy, crate::config::ConfigError> {
        let settings = Settings::from_config(config, &config.resolved_cameras())?;
        Ok(Policy::with_settings(settings))
    }

    pub fn with_settings(settings: Settings) -> Policy {
        let known = settings.cameras.keys().cloned().collect();
        Policy {
            budget: DailyBudget::new(settings.daily_limit),
            settings,
            // Frigate events last minutes; a day of ids is plenty and bounded.
            dedup: Dedup::new(Duration::from_secs(24 * 3600), 100_000),
            cooldown: Cooldown::default(),
            buckets: Buckets::default(),
            bucket_ready: HashMap::new(),
            budget_stopped: false,
            arm: ArmState::default(),
            pending: BTreeMap::new(),
            known,
            dirty: false,
        }
    }

    pub fn decide(&mut self, ev: &Event, now: Now) -> Decision {
        let Some(cam) = self.settings.camera(&ev.camera).cloned() else {
            return Decision::Unlisted;
        };
        self.known.insert(ev.camera.clone());
        let ids: Vec<&str> = std::iter::once(ev.id.as_str())
            .chain(ev.related_ids.iter().map(String::as_str))
            .collect();
        if ids.iter().any(|id| self.dedup.seen(id, now.mono)) {
            // Remember the rest too: a review adds detection ids to one happening.
            for id in &ids {
                self.dedup.remember(id, now.mono);
            }
            return Decision::Duplicate;
        }
        match self.arm.get(&ev.camera).status(now.wall) {
            Status::Armed => {}
            Status::Disarmed => {
                return Decision::Filtered {
                    rule: Rule::Disarmed,
                    digest: false,
                }
            }
            Status::Snoozed { until } => {
                return Decision::Filtered {
                    rule: Rule::Snoozed {
                        until: self.settings.schedules.short_time(until, now.wall),
                    },
                    digest: false,
                }
            }
        }
        if let Err(rule) = cam.filters.check(ev) {
            // Not remembered: a later update with a higher score may still pass.
            return Decision::Filtered {
                rule,
                digest: false,
            };
        }
        let schedules = &self.settings.schedules;
        if !cam.active.is_empty() && schedules.first_containing(&cam.active, now.wall).is_none() {
            return Decision::Filtered {
                rule: Rule::Inactive {
                    windows: cam.active.clone(),
                },
                digest: false,
            };
        }
        if let Some(w) = schedules.first_containing(&cam.quiet, now.wall) {
            let rule = Rule::Quiet {
                window: w.to_string(),
            };
            let digest = cam.quiet_digest && self.settings.digest.enabled;
            self.remember_all(&ids, now);
            if digest {
                self.collect(ev, now);
            }
            return Decision::Filtered { rule, digest };
        }
        self.remember_all(&ids, now);
        let priority = self
            .settings
            .priority
            .iter()
            .any(|p| p.matches(ev, &self.settings.schedules, now.wall));
        if let Err(free_at) = self.budget.check(now.wall) {
            let wait = Duration::try_from(free_at.duration_since(now.wall)).unwrap_or_default();
            return self.suppress(ev, Limit::Daily, wait, now);
        }
        if !priority {
            let wait = self.cooldown.wait(&ev.camera, cam.cooldown, now.mono);
            if !wait.is_zero() {
                return self.suppress(ev, Limit::Cooldown, wait, now);
            }
            if let Some(spec) = cam.bucket {
                if let Err(wait) = self.buckets.try_take(&ev.camera, spec, now.mono) {
                    self.bucket_ready.insert(ev.camera.clone(), now.mono + wait);
                    return self.suppress(ev, Limit::Bucket, wait, now);
                }
            }
            self.cooldown.take(&ev.camera, now.mono);
        }
        self.count_mail(now);
        Decision::Mail { priority }
    }

    fn remember_all(&mut self, ids: &[&str], now: Now) {
        for id in ids {
            self.dedup.remember(id, now.mono);
        }
    }

    fn suppress(&mut self, ev: &Event, limit: Limit, wait: Duration, now: Now) -> Decision {
        let digest = self.settings.digest.enabled;
        if digest {
            self.collect(ev, now);
        }
        Decision::Suppressed {
            limit,
            wait,
            digest,
        }
    }

    fn collect(&mut self, ev: &Event, now: Now) {
        let max = self.settings.digest.max_images;
        self.pending
            .entry(ev.camera.clone())
            .or_insert_with(|| Pending::new(now.mono, now.wall))
            .add(ev, max);
    }

    /// Count one queued mail against the daily budget, with the 80 % / 100 % warnings.
    fn count_mail(&mut self, now: Now) {
        let limit = self.budget.limit();
        match self.budget.record(now.wall) {
            Level::Normal => {}
            Level::Warning => warn!(
                "daily_limit: 80% of the budget used ({} of {limit} mails in the last 24 h); \
                 raise cooldown or interval, or tighten filters, to stay under Gmail's quota",
                self.budget.used(now.wall)
            ),
            Level::Exhausted => {
                self.budget_stopped = true;
                error!(
                    "daily_limit: {limit} mails in the last 24 h; no more mail until the oldest \
                     is 24 h old (suppressed events go into digests). Raise daily_limit only if \
                     your Gmail account allows it"
                );
            }
        }
        self.dirty = true;
    }

    /// Timers: snooze ends and due digests. Call about once a second.
    pub fn tick(&mut self, now: Now) -> Tick {
        let woke = self.arm.expire(now.wall);
        if !woke.is_empty() {
            self.dirty = true;
        }
        if self.budget_stopped && self.budget.check(now.wall).is_ok() {
            self.budget_stopped = false;
            info!("daily_limit: the rolling 24 h window has room again; mailing resumes");
        }
        let mut digests = Vec::new();
        let cameras: Vec<String> = self.pending.keys().cloned().collect();
        for camera in cameras {
            let Some(cam) = self.settings.camera(&camera).cloned() else {
                self.pending.remove(&camera);
                continue;
            };
            if self.arm.get(&camera).status(now.wall) != Status::Armed {
                continue;
            }
            let schedules = &self.settings.schedules;
            if !cam.active.is_empty() && schedules.first_containing(&cam.active, now.wall).is_none()
            {
                continue;
            }
            if schedules.first_containing(&cam.quiet, now.wall).is_some() {
                continue;
            }
            if self.budget.check(now.wall).is_err() {
                continue;
            }
            let first = self.pending[&camera].first;
            let overdue =
                now.mono.saturating_duration_since(first) >= self.settings.digest.max_delay.0;
            let mut ready = self
                .cooldown
                .wait(&camera, cam.cooldown, now.mono)
                .is_zero()
                && self
                    .bucket_ready
                    .get(&camera)
                    .is_none_or(|t| *t <= now.mono);
            if ready {
                if let Some(spec) = cam.bucket {
                    if let Err(wait) = self.buckets.try_take(&camera, spec, now.mono) {
                        self.bucket_ready.insert(camera.clone(), now.mono + wait);
                        ready = false;
                    }
                }
            }
            if !ready && !overdue {
                continue;
            }
            self.cooldown.take(&camera, now.mono);
            self.count_mail(now);
            let p = self.pending.remove(&camera).expect("key from pending");
            let since = self.settings.schedules.short_time(p.since, now.wall);
            digests.push(p.finish(&camera, since));
        }
        Tick { digests, woke }
    }

    /// Apply an arm/disarm/snooze command; returns the cameras whose state changed.
    pub fn control(&mut self, cmd: &Control, now: Now) -> Vec<String> {
        let changed = self.arm.apply(cmd, now.wall, &self.known.clone());
        if let Some(c) = &cmd.camera {
            self.known.insert(c.clone());
        }
        // Silencing a camera also drops what it had collected for a digest.
        let silenced = match cmd.action {
            ControlAction::Arm(on) => !on,
            ControlAction::Snooze(d) => !d.is_zero(),
        };
        if silenced {
            for c in &changed {
                self.pending.remove(c);
            }
            if cmd.camera.is_none() {
                self.pending.clear();
            }
        }
        self.dirty = true;
        changed
    }

    /// Retained state messages for `cameras` (every known camera when `None`).
    pub fn state_messages(&self, cameras: Option<&[String]>, now: Now) -> Vec<Outgoing> {
        let Some(prefix) = &self.settings.control_prefix else {
            return Vec::new();
        };
        let all: Vec<String>;
        let list = match cameras {
            Some(c) => c,
            None => {
                all = self.known.iter().cloned().collect();
                &all
            }
        };
        list.iter()
            .filter_map(|c| self.arm.state_message(prefix, c, now.wall))
            .collect()
    }

    /// What goes into the state file.
    pub fn state(&self) -> StateFile {
        StateFile {
            arm: self.arm.clone(),
            daily_sent: self.budget.export(),
        }
    }

    /// Restore arm/snooze state and the daily budget from the state file.
    pub fn restore(&mut self, s: StateFile) {
        self.known.extend(s.arm.cameras.keys().cloned());
        self.arm = s.arm;
        self.budget.import(&s.daily_sent);
    }

    /// Whether the state changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }
}

/// What a [`Policy::tick`] produced.
#[derive(Debug, Default)]
pub struct Tick {
    pub digests: Vec<Digest>,
    /// Cameras whose snooze ended.
    pub woke: Vec<String>,
}

/// The policy stage's connections to the rest of the pipeline.
pub struct Links {
    /// Events to mail.
    pub mail: mpsc::Sender<Event>,
    /// Digests to mail.
    pub digests: mpsc::Sender<Digest>,
    /// Retained state messages (`None`: control topics off).
    pub publish: Option<mpsc::Sender<Outgoing>>,
    /// Moves on every MQTT (re)connection: publish the state again.
    pub connections: Option<watch::Receiver<u64>>,
    pub state_file: Option<PathBuf>,
}

/// Run the policy stage until the input closes.
pub async fn run(mut policy: Policy, mut rx: mpsc::Receiver<Input>, mut links: Links) {
    if let Some(path) = &links.state_file {
        match load_state(path).await {
            Ok(Some(s)) => {
                info!(file = %path.display(), "policy: arm/snooze state restored");
                policy.restore(s);
            }
            Ok(None) => {}
            Err(e) => warn!("{e}"),
        }
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged_filtered = Dedup::new(Duration::from_secs(3600), 10_000);
    'run: loop {
        // Commands are saved at once; what events change (the daily budget) at the next
        // tick, so a burst of events costs one write a second, not one per mail.
        let mut save = false;
        tokio::select! {
            input = rx.recv() => match input {
                None => break,
                Some(Input::Event(ev)) => {
                    let now = Now::system();
                    let decision = policy.decide(&ev, now);
                    log_decision(&ev, &decision, &mut logged_filtered, now);
                    if matches!(decision, Decision::Mail { .. })
                        && links.mail.send(*ev).await.is_err()
                    {
                        break;
                    }
                }
                Some(Input::Control(cmd)) => {
                    let now = Now::system();
                    let changed = policy.control(&cmd, now);
                    let target = cmd.camera.as_deref().unwrap_or("all cameras");
                    let what = match cmd.action {
                        ControlAction::Arm(true) => "armed".to_owned(),
                        ControlAction::Arm(false) => "disarmed".to_owned(),
                        ControlAction::Snooze(d) if d.is_zero() => "snooze cancelled".to_owned(),
                        ControlAction::Snooze(d) => {
                            format!("snoozed for {}", humantime::format_duration(d))
                        }
                    };
                    info!("control: {target} {what} ({} changed)", changed.len());
                    publish(&links, policy.state_messages(Some(&changed), now)).await;
                    save = true;
                }
            },
            changed = async { links.connections.as_mut().expect("guarded").changed().await },
                if links.connections.is_some() =>
            {
                if changed.is_err() {
                    links.connections = None;
                } else {
                    publish(&links, policy.state_messages(None, Now::system())).await;
                }
            }
            _ = tick.tick() => {
                let now = Now::system();
                let t = policy.tick(now);
                publish(&links, policy.state_messages(Some(&t.woke), now)).await;
                save = true;
                for d in t.digests {
                    info!(camera = %d.camera, "digest: {}", d.headline());
                    if links.digests.send(d).await.is_err() {
                        break 'run;
                    }
                }
            }
        }
        if save {
            save_if_dirty(&mut policy, &links).await;
        }
    }
    save_if_dirty(&mut policy, &links).await;
}

async fn save_if_dirty(policy: &mut Policy, links: &Links) {
    if policy.take_dirty() {
        if let Some(path) = &links.state_file {
            if let Err(e) = save_state(path, &policy.state()).await {
                warn!("{e}");
            }
        }
    }
}

fn log_decision(ev: &Event, d: &Decision, logged: &mut Dedup, now: Now) {
    let summary = ev.summary();
    let m = crate::metrics::metrics();
    match d {
        Decision::Mail { .. } => m.decision("mailed", ""),
        Decision::Duplicate => m.decision("duplicate", ""),
        Decision::Unlisted => m.decision("filtered", "cameras_only"),
        Decision::Filtered { rule, .. } => m.decision("filtered", rule.key()),
        Decision::Suppressed { limit, .. } => m.decision("suppressed", limit.name()),
    }
    match d {
        Decision::Mail { priority: false } => {
            info!(camera = %ev.camera, id = %ev.id, source = ev.source, "event {summary}: mailing")
        }
        Decision::Mail { priority: true } => info!(
            camera = %ev.camera, id = %ev.id, source = ev.source,
            "event {summary}: mailing (priority rule: cooldown and rate limit skipped)"
        ),
        Decision::Duplicate => {
            debug!(camera = %ev.camera, id = %ev.id, "event already handled; nothing to send")
        }
        Decision::Unlisted => debug!(
            camera = %ev.camera, id = %ev.id,
            "event {summary}: camera not listed under cameras and cameras_only is set"
        ),
        Decision::Filtered { rule, digest } => {
            // Frigate repeats an event in every update; say why once per event id.
            let first = logged.first_time(&format!("{}\u{0}{rule}", ev.id), now.mono);
            let then = if *digest {
                " (kept for the digest)"
            } else {
                ""
            };
            if first {
                info!(camera = %ev.camera, id = %ev.id, "event {summary}: filtered by {rule}{then}");
            } else {
                debug!(camera = %ev.camera, id = %ev.id, "event {summary}: filtered by {rule}{then}");
            }
        }
        Decision::Suppressed {
            limit,
            wait,
            digest,
        } => {
            let then = if *digest {
                "; counted for the digest"
            } else {
                ""
            };
            let wait = humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)));
            info!(
                camera = %ev.camera, id = %ev.id,
                "event {summary}: suppressed by {}; next mail for {} may go in {wait}{then}",
                limit.name(), ev.camera
            );
        }
    }
}

async fn publish(links: &Links, messages: Vec<Outgoing>) {
    if let Some(tx) = &links.publish {
        for m in messages {
            if tx.send(m).await.is_err() {
                return;
            }
        }
    }
}

async fn load_state(path: &std::path::Path) -> Result<Option<StateFile>, String> {
    crate::state_file::load(path).await.map_err(|e| match e {
        StateFileError::Parse { .. } => format!(
            "control.state_file: {e}; starting with every camera armed (delete the file to silence this)"
        ),
        _ => format!("control.state_file: {e}; starting with every camera armed"),
    })
}

async fn save_state(path: &std::path::Path, state: &StateFile) -> Result<(), String> {
    crate::state_file::save(path, state).await.map_err(|e| {
        format!(
            "control.state_file: {e}; arm/snooze state will not survive a restart — fix the directory's permissions or set control.state_file"
        )
    })
}

#[cfg(test)]
mod tests;
