//! A playbook compiled from its definition: typed trigger, audience, exit
//! criteria and steps, with every template and condition checked. Runs
//! execute plans; a definition that does not compile is never stored.

use std::collections::HashMap;
use std::time::Duration;

use chrono::NaiveDate;
use serde_json::Value;
use tenure_platform::Violations;

use crate::definition::{self, Definition, Format};

mod compile;

pub use compile::compile;

/// Parses, validates and compiles a definition document in `format`;
/// violations are named under `field` (`definition.steps[2].next`).
pub fn compile_document(
    text: &str,
    format: Format,
    field: &str,
    violations: &mut Violations,
) -> Option<(Definition, Plan)> {
    let definition = definition::parse(text, format, field, violations)?;
    let plan = compile(&definition, field, violations)?;
    Some((definition, plan))
}

pub const BANDS: &[&str] = &["red", "yellow", "green"];
const ROLES: &[&str] = &["sponsor", "champion", "admin", "user"];
const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
const ACCOUNT_FIELDS: &[&str] = &["id", "name", "owner", "segment", "lifecycle_stage"];

/// What starts a playbook.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    BandChanged {
        from: Option<String>,
        to: Option<String>,
    },
    ScoreDropped {
        points: f64,
    },
    RenewalApproaching {
        days: i64,
    },
    SponsorChanged,
    ChampionChanged,
    Nps {
        category: String,
    },
    OnboardingStalled {
        utilization_below_pct: f64,
        days_after_start: i64,
    },
    UsageDropped {
        drop_pct: f64,
    },
    AdvocateFound {
        min_nps: i64,
    },
    ExternalSignal {
        signal_type: String,
    },
    Schedule {
        every_days: i64,
    },
    Manual,
    /// An account rose on a maturity model: to any higher level, or past
    /// `level` (from below it to it or above).
    MaturityReached {
        model: String,
        level: Option<i64>,
    },
    /// An account fell to a lower level of a maturity model.
    MaturityDropped {
        model: String,
    },
    /// An account stayed at a level (any, or `level`) longer than the model
    /// expects, and at least `min_days`.
    MaturityStuck {
        model: String,
        level: Option<i64>,
        min_days: i64,
    },
}

impl Trigger {
    /// The event kind it listens to.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BandChanged { .. } => "health_band_changed",
            Self::ScoreDropped { .. } => "score_dropped",
            Self::RenewalApproaching { .. } => "renewal_approaching",
            Self::SponsorChanged => "sponsor_changed",
            Self::ChampionChanged => "champion_changed",
            Self::Nps { .. } => "nps_response",
            Self::OnboardingStalled { .. } => "onboarding_stalled",
            Self::UsageDropped { .. } => "usage_dropped",
            Self::AdvocateFound { .. } => "advocate_found",
            Self::ExternalSignal { .. } => "external_signal",
            Self::Schedule { .. } => "schedule",
            Self::Manual => "manual",
            Self::MaturityReached { .. } | Self::MaturityDropped { .. } => "maturity_level_changed",
            Self::MaturityStuck { .. } => "maturity_level_stuck",
        }
    }

    /// Whether an event of this trigger's kind with `payload` starts it.
    pub fn matches(&self, payload: &Value) -> bool {
        let text = |key: &str| payload.get(key).and_then(value_text);
        let number = |key: &str| payload.get(key).and_then(value_number);
        match self {
            Self::BandChanged { from, to } => {
                from.as_deref()
                    .is_none_or(|f| text("previous_band").as_deref() == Some(f))
                    && to
                        .as_deref()
                        .is_none_or(|t| text("band").as_deref() == Some(t))
            }
            Self::ScoreDropped { points } => match (number("previous_score"), number("score")) {
                (Some(previous), Some(score)) => previous - score >= *points,
                _ => false,
            },
            Self::RenewalApproaching { days } => {
                number("threshold_days").is_some_and(|t| t as i64 == *days)
            }
            Self::SponsorChanged | Self::ChampionChanged | Self::Manual => true,
            Self::Nps { category } => {
                number("score").is_some_and(|score| nps_category(score) == category.as_str())
            }
            Self::OnboardingStalled {
                utilization_below_pct,
                days_after_start,
            } => {
                number("utilization_pct").is_some_and(|u| u < *utilization_below_pct)
                    && number("days_since_start").is_some_and(|d| d >= *days_after_start as f64)
            }
            Self::UsageDropped { drop_pct } => number("drop_pct").is_some_and(|d| d >= *drop_pct),
            Self::AdvocateFound { .. } | Self::Schedule { .. } => true,
            Self::ExternalSignal { signal_type } => {
                text("signal_type").as_deref() == Some(signal_type.as_str())
            }
            Self::MaturityReached { model, level } => {
                let of_model = text("model").as_deref() == Some(model.as_str());
                match (number("previous_level"), number("level")) {
                    (Some(previous), Some(now)) if of_model && now > previous => {
                        level.is_none_or(|l| previous < l as f64 && l as f64 <= now)
                    }
                    _ => false,
                }
            }
            Self::MaturityDropped { model } => {
                text("model").as_deref() == Some(model.as_str())
                    && matches!((number("previous_level"), number("level")), (Some(p), Some(n)) if n < p)
            }
            Self::MaturityStuck {
                model,
                level,
                min_days,
            } => {
                text("model").as_deref() == Some(model.as_str())
                    && level.is_none_or(|l| number("level") == Some(l as f64))
                    && number("days_at_level").is_some_and(|d| d >= *min_days as f64)
            }
        }
    }
}

pub fn nps_category(score: f64) -> &'static str {
    if score >= 9.0 {
        "promoter"
    } else if score >= 7.0 {
        "passive"
    } else {
        "detractor"
    }
}

pub fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn value_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Which accounts a playbook is for; empty lists match any.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Audience {
    pub segments: Vec<String>,
    pub owners: Vec<String>,
    pub lifecycle_stages: Vec<String>,
    pub arr_min_minor: Option<i64>,
    pub arr_max_minor: Option<i64>,
}

/// A condition on an account's current facts.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Band(Vec<String>),
    ScoreBelow(f64),
    ScoreAtLeast(f64),
    DaysToRenewalBelow(i64),
    TaskOutcome { step: String, is: String },
    All(Vec<Condition>),
    Any(Vec<Condition>),
}

impl Condition {
    /// Whether it needs health's score and band / ingestion's signals.
    pub fn needs_health(&self) -> bool {
        match self {
            Self::Band(_) | Self::ScoreBelow(_) | Self::ScoreAtLeast(_) => true,
            Self::All(c) | Self::Any(c) => c.iter().any(Self::needs_health),
            _ => false,
        }
    }

    pub fn needs_signals(&self) -> bool {
        match self {
            Self::DaysToRenewalBelow(_) => true,
            Self::All(c) | Self::Any(c) => c.iter().any(Self::needs_signals),
            _ => false,
        }
    }
}

/// A text with `{{ path }}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template(pub String);

impl Template {
    /// Fills placeholders from `facts` (`account.name`, `trigger.score`,
    /// `playbook.title`, `run.id`); unknown values render empty.
    pub fn render(&self, facts: &Value) -> String {
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return out;
            };
            let path = after[..end].trim();
            let mut value = facts;
            for part in path.split('.') {
                value = value.get(part).unwrap_or(&Value::Null);
            }
            out.push_str(&value_text(value).unwrap_or_default());
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Wait {
    For(Duration),
    Until(NaiveDate),
    Condition {
        condition: Condition,
        timeout: Duration,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Task {
        assignee: String,
        title: Template,
        body: Template,
        due_in_days: u32,
        priority: String,
    },
    Email {
        to_role: String,
        subject: Template,
        body: Template,
    },
    Webhook {
        url: String,
    },
    Wait(Wait),
    Branch(Condition),
    End,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlanStep {
    pub id: String,
    pub action: Action,
    pub next: Option<String>,
    pub then: Option<String>,
    pub otherwise: Option<String>,
    pub on_timeout: Option<String>,
}

impl PlanStep {
    pub fn type_name(&self) -> &'static str {
        match self.action {
            Action::Task { .. } => "task",
            Action::Email { .. } => "email",
            Action::Webhook { .. } => "webhook",
            Action::Wait(_) => "wait",
            Action::Branch(_) => "branch",
            Action::End => "end",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub title: String,
    pub trigger: Trigger,
    pub audience: Audience,
    pub cooldown: chrono::Duration,
    pub exit_when: Option<Condition>,
    pub steps: Vec<PlanStep>,
}

impl Plan {
    pub fn step(&self, id: &str) -> Option<&PlanStep> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn first(&self) -> Option<&PlanStep> {
        self.steps.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::tests::GOOD;

    #[test]
    fn accepts_a_valid_definition() {
        let mut violations = Violations::default();
        let (definition, plan) =
            compile_document(GOOD, Format::Json, "definition", &mut violations).expect("valid");
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(definition.steps.len(), 4);
        assert_eq!(plan.trigger.kind(), "onboarding_stalled");
    }

    #[test]
    fn reads_yaml_as_it_reads_json() {
        let yaml = r#"
name: onboarding-stalled
title: Onboarding stalled
trigger: {type: onboarding_stalled, utilization_below_pct: 30, days_after_start: 30}
steps:
  - {id: call, type: task, title: "Call {{account.name}}", next: wait}
  - {id: wait, type: wait, for: 7d, next: check}
  - id: check
    type: branch
    condition: {band: green}
    then: done
    else: call
  - {id: done, type: end}
"#;
        let mut violations = Violations::default();
        let (_, from_yaml) =
            compile_document(yaml, Format::Yaml, "definition", &mut violations).unwrap();
        let (_, from_json) =
            compile_document(GOOD, Format::Json, "definition", &mut violations).unwrap();
        assert_eq!(from_yaml.steps.len(), from_json.steps.len());
        assert_eq!(from_yaml.trigger, from_json.trigger);
        assert!(
            compile_document("steps: [", Format::Yaml, "definition", &mut violations).is_none()
        );
    }
}
