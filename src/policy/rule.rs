//! Why the policy dropped an event, as a value: each [`Rule`] knows the configuration key it
//! comes from (the `reason` label of `snapmail_decisions`, and what the user edits) and
//! renders the sentence the log shows.

use std::fmt;

/// The rule that filtered an event out.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `labels`: the event's label is not in the list.
    Labels { label: String, allowed: Vec<String> },
    /// `ignore_labels`: the event's label is in it.
    IgnoreLabels { label: String },
    /// `min_score`: the score (0..1) is below the minimum.
    MinScore { score: f32, min: f32 },
    /// `zones`/`zones_match`: the event did not enter any (or all) of the zones.
    Zones {
        all: bool,
        wanted: Vec<String>,
        entered: Vec<String>,
    },
    /// `ignore_sub_labels`: the sub-label (a face, a plate) is in it.
    IgnoreSubLabels { sub_label: String },
    /// `sub_labels`: the event has no sub-label from the list.
    SubLabels {
        sub_label: Option<String>,
        allowed: Vec<String>,
    },
    /// `severity`: a review of another severity.
    Severity {
        severity: String,
        allowed: Vec<String>,
    },
    /// `ignore_stationary`: the object is not moving.
    Stationary,
    /// The camera was disarmed over its control topic.
    Disarmed,
    /// The camera is snoozed; `until` is the local time it wakes.
    Snoozed { until: String },
    /// `active`: outside every listed window.
    Inactive { windows: Vec<String> },
    /// `quiet`: inside this window.
    Quiet { window: String },
}

impl Rule {
    /// The configuration key (or state) behind the rule: a short, bounded metric label.
    pub fn key(&self) -> &'static str {
        match self {
            Rule::Labels { .. } => "labels",
            Rule::IgnoreLabels { .. } => "ignore_labels",
            Rule::MinScore { .. } => "min_score",
            Rule::Zones { .. } => "zones",
            Rule::IgnoreSubLabels { .. } => "ignore_sub_labels",
            Rule::SubLabels { .. } => "sub_labels",
            Rule::Severity { .. } => "severity",
            Rule::Stationary => "ignore_stationary",
            Rule::Disarmed => "disarmed",
            Rule::Snoozed { .. } => "snoozed",
            Rule::Inactive { .. } => "active",
            Rule::Quiet { .. } => "quiet",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Labels { label, allowed } => {
                write!(
                    f,
                    "labels: {label:?} is not one of [{}]",
                    allowed.join(", ")
                )
            }
            Rule::IgnoreLabels { label } => write!(f, "ignore_labels: {label:?}"),
            Rule::MinScore { score, min } => write!(
                f,
                "min_score: {:.0}% is below {:.0}%",
                score * 100.0,
                min * 100.0
            ),
            Rule::Zones {
                all,
                wanted,
                entered,
            } => write!(
                f,
                "zones ({} of [{}]): entered [{}]",
                if *all { "all" } else { "any" },
                wanted.join(", "),
                entered.join(", ")
            ),
            Rule::IgnoreSubLabels { sub_label } => write!(f, "ignore_sub_labels: {sub_label:?}"),
            Rule::SubLabels { sub_label, allowed } => write!(
                f,
                "sub_labels: {:?} is not one of [{}]",
                sub_label.as_deref().unwrap_or("none"),
                allowed.join(", ")
            ),
            Rule::Severity { severity, allowed } => write!(
                f,
                "severity: {severity:?} is not one of [{}]",
                allowed.join(", ")
            ),
            Rule::Stationary => f.write_str("ignore_stationary: the object is not moving"),
            Rule::Disarmed => {
                f.write_str("the camera is disarmed (publish ON to its set topic to arm it)")
            }
            Rule::Snoozed { until } => write!(f, "snoozed until {until}"),
            Rule::Inactive { windows } => {
                write!(f, "outside the active windows [{}]", windows.join(", "))
            }
            Rule::Quiet { window } => write!(f, "quiet window {window}"),
        }
    }
}
