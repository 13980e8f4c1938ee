//! The doctor's report: one line per step (`✔` passed, `✘` failed with the fix, `!` a
//! warning, `-` skipped, `·` a detail), or the steps as JSON.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    Ok,
    Fail,
    Warn,
    Skip,
    Info,
}

impl Status {
    fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "✔",
            Status::Fail => "✘",
            Status::Warn => "!",
            Status::Skip => "-",
            Status::Info => "  ·",
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct Step {
    step: String,
    status: Status,
    /// What was measured.
    fact: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

pub(super) struct Report {
    pub(super) json: bool,
    pub(super) steps: Vec<Step>,
}

impl Report {
    pub(super) fn add(
        &mut self,
        step: &str,
        status: Status,
        fact: impl Into<String>,
        fix: Option<String>,
    ) {
        let step = Step {
            step: step.to_owned(),
            status,
            fact: fact.into(),
            fix,
        };
        if !self.json {
            let mut line = format!("{} {}: {}", step.status.symbol(), step.step, step.fact);
            if let Some(fix) = &step.fix {
                line.push_str(" → fix: ");
                line.push_str(fix);
            }
            println!("{line}");
        }
        self.steps.push(step);
    }
    pub(super) fn ok(&mut self, step: &str, fact: impl Into<String>) {
        self.add(step, Status::Ok, fact, None);
    }
    pub(super) fn fail(&mut self, step: &str, fact: impl Into<String>, fix: impl Into<String>) {
        self.add(step, Status::Fail, fact, Some(fix.into()));
    }
    pub(super) fn warn(&mut self, step: &str, fact: impl Into<String>, fix: impl Into<String>) {
        self.add(step, Status::Warn, fact, Some(fix.into()));
    }
    pub(super) fn skip(&mut self, step: &str, fact: impl Into<String>) {
        self.add(step, Status::Skip, fact, None);
    }
    pub(super) fn info(&mut self, step: &str, fact: impl Into<String>) {
        self.add(step, Status::Info, fact, None);
    }
    pub(super) fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.status == Status::Fail)
    }
}
