//! Compiling a definition into a [`Plan`]: every setting read, typed and
//! checked, each problem recorded as a field violation.

use serde_json::{Map, Value};
use tenure_platform::Violations;

use super::*;
use crate::definition::{Definition, Step};

/// Reads settings of one object, recording violations under `path`.
struct Reader<'a> {
    map: &'a Map<String, Value>,
    path: String,
    violations: &'a mut Violations,
}

impl Reader<'_> {
    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn text(&mut self, key: &str, required: bool) -> Option<String> {
        match self.map.get(key) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 4000 => Some(s.clone()),
            None if !required => None,
            None => {
                self.violations.add(self.field(key), "is required");
                None
            }
            Some(_) => {
                self.violations
                    .add(self.field(key), "must be a text of 1-4000 characters");
                None
            }
        }
    }

    fn one_of(&mut self, key: &str, choices: &[&str], required: bool) -> Option<String> {
        let value = self.text(key, required)?;
        if choices.contains(&value.as_str()) {
            Some(value)
        } else {
            self.violations.add(
                self.field(key),
                format!("must be one of {}", choices.join(", ")),
            );
            None
        }
    }

    fn number(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
        required: bool,
    ) -> Option<f64> {
        match self.map.get(key).map(|v| (v, v.as_f64())) {
            Some((_, Some(n))) if range.contains(&n) => Some(n),
            None if !required => None,
            None => {
                self.violations.add(self.field(key), "is required");
                None
            }
            Some(_) => {
                self.violations.add(
                    self.field(key),
                    format!("must be a number from {} to {}", range.start(), range.end()),
                );
                None
            }
        }
    }

    fn template(&mut self, key: &str, required: bool) -> Option<Template> {
        let text = self.text(key, required)?;
        check_template(&text, &self.field(key), self.violations);
        Some(Template(text))
    }

    fn duration(&mut self, key: &str, required: bool) -> Option<Duration> {
        let text = self.text(key, required)?;
        match humantime::parse_duration(&text) {
            Ok(d) if d > Duration::ZERO && d <= Duration::from_secs(400 * 86_400) => Some(d),
            _ => {
                self.violations.add(
                    self.field(key),
                    "must be a duration such as 30m, 12h or 7d, at most 400 days",
                );
                None
            }
        }
    }
}

/// Checks `{{ path }}` placeholders: closed, and naming known facts.
fn check_template(text: &str, field: &str, violations: &mut Violations) {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            violations.add(field, "has an unclosed {{ placeholder");
            return;
        };
        let path = after[..end].trim();
        let mut parts = path.split('.');
        let known = match (parts.next(), parts.next(), parts.next()) {
            (Some("account"), Some(key), None) => ACCOUNT_FIELDS.contains(&key),
            (Some("trigger"), Some(key), None) => !key.is_empty(),
            (Some("playbook"), Some("title" | "name"), None) => true,
            (Some("run"), Some("id"), None) => true,
            _ => false,
        };
        if !known {
            violations.add(
                field,
                format!(
                    "names an unknown value {{{{{path}}}}}: use account.{{{}}}, trigger.<key>, playbook.title or run.id",
                    ACCOUNT_FIELDS.join(",")
                ),
            );
        }
        rest = &after[end + 2..];
    }
}

fn condition(
    value: &Value,
    field: &str,
    tasks: &[&str],
    violations: &mut Violations,
) -> Option<Condition> {
    let Some((key, arg)) = value
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        violations.add(
            field,
            "must be an object with one of band, score_below, score_at_least, days_to_renewal_below, task_outcome, all, any",
        );
        return None;
    };
    let field = format!("{field}.{key}");
    let bands = |violations: &mut Violations| {
        let list: Vec<String> = match arg {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if list.is_empty() || list.iter().any(|b| !BANDS.contains(&b.as_str())) {
            violations.add(&field, "must be red, yellow or green, or a list of them");
            return None;
        }
        Some(list)
    };
    let number = |violations: &mut Violations, max: f64| match arg.as_f64() {
        Some(n) if (0.0..=max).contains(&n) => Some(n),
        _ => {
            violations.add(&field, format!("must be a number from 0 to {max}"));
            None
        }
    };
    match key.as_str() {
        "band" => bands(violations).map(Condition::Band),
        "score_below" => number(violations, 100.0).map(Condition::ScoreBelow),
        "score_at_least" => number(violations, 100.0).map(Condition::ScoreAtLeast),
        "days_to_renewal_below" => {
            number(violations, 3650.0).map(|n| Condition::DaysToRenewalBelow(n as i64))
        }
        "task_outcome" => {
            let step = arg.get("step").and_then(Value::as_str);
            let is = arg.get("is").and_then(Value::as_str);
            match (step, is) {
                (Some(step), Some(is)) if tasks.contains(&step) && !is.is_empty() => {
                    Some(Condition::TaskOutcome {
                        step: step.to_owned(),
                        is: is.to_owned(),
                    })
                }
                (Some(step), Some(_)) if !tasks.contains(&step) => {
                    violations.add(format!("{field}.step"), "must name a task step");
                    None
                }
                _ => {
                    violations.add(
                        &field,
                        "must be {\"step\": <task step id>, \"is\": <outcome>}",
                    );
                    None
                }
            }
        }
        "all" | "any" => {
            let Some(items) = arg.as_array().filter(|a| !a.is_empty() && a.len() <= 20) else {
                violations.add(&field, "must be a list of 1-20 conditions");
                return None;
            };
            let parts: Vec<Option<Condition>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| condition(item, &format!("{field}[{i}]"), tasks, violations))
                .collect();
            let parts: Option<Vec<Condition>> = parts.into_iter().collect();
            parts.map(|p| {
                if key == "all" {
                    Condition::All(p)
                } else {
                    Condition::Any(p)
                }
            })
        }
        _ => {
            violations.add(&field, "is not a known condition");
            None
        }
    }
}

fn trigger(definition: &Definition, field: &str, violations: &mut Violations) -> Option<Trigger> {
    let mut r = Reader {
        map: &definition.trigger.settings,
        path: format!("{field}.trigger"),
        violations,
    };
    Some(match definition.trigger.kind.as_str() {
        "health_band_changed" => Trigger::BandChanged {
            from: r.one_of("from", BANDS, false),
            to: r.one_of("to", BANDS, false),
        },
        "score_dropped" => Trigger::ScoreDropped {
            points: r.number("points", 1.0..=100.0, false).unwrap_or(10.0),
        },
        "renewal_approaching" => Trigger::RenewalApproaching {
            days: r.number("days", 1.0..=730.0, true)? as i64,
        },
        "sponsor_changed" => Trigger::SponsorChanged,
        "champion_changed" => Trigger::ChampionChanged,
        "nps_response" => Trigger::Nps {
            category: r.one_of("category", &["detractor", "passive", "promoter"], true)?,
        },
        "onboarding_stalled" => {
            let utilization = r.number("utilization_below_pct", 0.0..=100.0, true);
            let days = r.number("days_after_start", 0.0..=730.0, true);
            Trigger::OnboardingStalled {
                utilization_below_pct: utilization?,
                days_after_start: days? as i64,
            }
        }
        "usage_dropped" => Trigger::UsageDropped {
            drop_pct: r.number("drop_pct", 1.0..=100.0, true)?,
        },
        "advocate_found" => Trigger::AdvocateFound {
            min_nps: r.number("min_nps", 0.0..=10.0, false).unwrap_or(9.0) as i64,
        },
        "external_signal" => Trigger::ExternalSignal {
            signal_type: r.text("signal_type", true)?,
        },
        "schedule" => Trigger::Schedule {
            every_days: r.number("every_days", 1.0..=365.0, true)? as i64,
        },
        "manual" => Trigger::Manual,
        "maturity_level_reached" => {
            let model = r.text("model", true);
            let level = r.number("level", 1.0..=7.0, false).map(|l| l as i64);
            Trigger::MaturityReached {
                model: model?,
                level,
            }
        }
        "maturity_level_dropped" => Trigger::MaturityDropped {
            model: r.text("model", true)?,
        },
        "maturity_level_stuck" => {
            let model = r.text("model", true);
            let level = r.number("level", 1.0..=7.0, false).map(|l| l as i64);
            let min_days = r.number("min_days", 0.0..=3650.0, false).unwrap_or(0.0) as i64;
            Trigger::MaturityStuck {
                model: model?,
                level,
                min_days,
            }
        }
        _ => return None,
    })
}

fn action(step: &Step, path: &str, tasks: &[&str], violations: &mut Violations) -> Option<Action> {
    let mut r = Reader {
        map: &step.settings,
        path: path.to_owned(),
        violations,
    };
    Some(match step.kind.as_str() {
        "task" => {
            let assignee = r
                .text("assignee", false)
                .unwrap_or_else(|| "owner".to_owned());
            let assignee_ok = assignee == "owner"
                || assignee
                    .strip_prefix("role:")
                    .or_else(|| assignee.strip_prefix("queue:"))
                    .is_some_and(|rest| !rest.is_empty() && rest.len() <= 64);
            if !assignee_ok {
                r.violations.add(
                    r.field("assignee"),
                    "must be owner, role:<role> or queue:<queue>",
                );
            }
            let title = r.template("title", true);
            let body = r.template("body", false).unwrap_or(Template(String::new()));
            let due = r.number("due_in_days", 0.0..=365.0, false).unwrap_or(3.0);
            let priority = r
                .one_of("priority", PRIORITIES, false)
                .unwrap_or_else(|| "normal".to_owned());
            Action::Task {
                assignee,
                title: title?,
                body,
                due_in_days: due as u32,
                priority,
            }
        }
        "email" => {
            let to_role = r.one_of("to_role", ROLES, true);
            let subject = r.template("subject", true);
            let body = r.template("body", true);
            Action::Email {
                to_role: to_role?,
                subject: subject?,
                body: body?,
            }
        }
        "webhook" => {
            let url = r.text("url", true)?;
            if reqwest::Url::parse(&url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                r.violations
                    .add(r.field("url"), "must be an http or https URL");
            }
            Action::Webhook { url }
        }
        "wait" => {
            let kinds = ["for", "until", "condition"]
                .iter()
                .filter(|k| step.settings.contains_key(**k))
                .count();
            if kinds != 1 {
                r.violations
                    .add(path, "must have exactly one of for, until or condition");
                return None;
            }
            if let Some(d) = r.duration("for", false) {
                Action::Wait(Wait::For(d))
            } else if let Some(until) = r.text("until", false) {
                match until.parse::<NaiveDate>() {
                    Ok(day) => Action::Wait(Wait::Until(day)),
                    Err(_) => {
                        r.violations
                            .add(r.field("until"), "must be a date (YYYY-MM-DD)");
                        return None;
                    }
                }
            } else if let Some(value) = step.settings.get("condition") {
                let timeout = r.duration("timeout", true);
                let condition = condition(value, &format!("{path}.condition"), tasks, r.violations);
                Action::Wait(Wait::Condition {
                    condition: condition?,
                    timeout: timeout?,
                })
            } else {
                return None;
            }
        }
        "branch" => {
            let Some(value) = step.settings.get("condition") else {
                r.violations.add(r.field("condition"), "is required");
                return None;
            };
            Action::Branch(condition(
                value,
                &format!("{path}.condition"),
                tasks,
                r.violations,
            )?)
        }
        "end" => Action::End,
        _ => return None,
    })
}

/// Compiles a structurally valid definition; records what does not hold.
pub fn compile(definition: &Definition, field: &str, violations: &mut Violations) -> Option<Plan> {
    let before = violations.len();
    let trigger = trigger(definition, field, violations);
    let mut r = Reader {
        map: &definition.extra,
        path: field.to_owned(),
        violations,
    };
    let cooldown = r
        .number("cooldown_days", 0.0..=365.0, false)
        .unwrap_or(30.0);
    let audience = match definition.extra.get("audience") {
        None => Audience::default(),
        Some(Value::Object(map)) => {
            let mut a = Reader {
                map,
                path: format!("{field}.audience"),
                violations,
            };
            let list = |a: &mut Reader<'_>, key: &str| -> Vec<String> {
                match a.map.get(key) {
                    None => Vec::new(),
                    Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect(),
                    Some(_) => {
                        a.violations.add(a.field(key), "must be a list of texts");
                        Vec::new()
                    }
                }
            };
            let segments = list(&mut a, "segments");
            let owners = list(&mut a, "owners");
            let lifecycle_stages = list(&mut a, "lifecycle_stages");
            let min = a
                .number("arr_min_minor", 0.0..=1e15, false)
                .map(|n| n as i64);
            let max = a
                .number("arr_max_minor", 0.0..=1e15, false)
                .map(|n| n as i64);
            if let (Some(min), Some(max)) = (min, max) {
                a.violations.check(
                    min <= max,
                    a.field("arr_max_minor"),
                    "must not be below arr_min_minor",
                );
            }
            Audience {
                segments,
                owners,
                lifecycle_stages,
                arr_min_minor: min,
                arr_max_minor: max,
            }
        }
        Some(_) => {
            violations.add(format!("{field}.audience"), "must be an object");
            Audience::default()
        }
    };
    let tasks: Vec<&str> = definition
        .steps
        .iter()
        .filter(|s| s.kind == "task")
        .map(|s| s.id.as_str())
        .collect();
    let exit_when = definition
        .extra
        .get("exit_when")
        .and_then(|v| condition(v, &format!("{field}.exit_when"), &tasks, violations));
    let mut ids: HashMap<&str, ()> = HashMap::new();
    for step in &definition.steps {
        ids.insert(step.id.as_str(), ());
    }
    let mut steps = Vec::with_capacity(definition.steps.len());
    for (i, step) in definition.steps.iter().enumerate() {
        let path = format!("{field}.steps[{i}]");
        if let Some(target) = &step.on_timeout {
            if step.kind != "wait" || !step.settings.contains_key("condition") {
                violations.add(
                    format!("{path}.on_timeout"),
                    "is only for a wait on a condition",
                );
            } else if !ids.contains_key(target.as_str()) {
                violations.add(
                    format!("{path}.on_timeout"),
                    format!("names no step: {target:?}"),
                );
            }
        }
        if let Some(action) = action(step, &path, &tasks, violations) {
            steps.push(PlanStep {
                id: step.id.clone(),
                action,
                next: step.next.clone(),
                then: step.then.clone(),
                otherwise: step.otherwise.clone(),
                on_timeout: step.on_timeout.clone(),
            });
        }
    }
    if violations.len() != before {
        return None;
    }
    Some(Plan {
        name: definition.name.clone(),
        title: definition.title.clone(),
        trigger: trigger?,
        audience,
        cooldown: chrono::Duration::days(cooldown as i64),
        exit_when,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_and_check() {
        let facts = json!({"account": {"name": "Acme"}, "trigger": {"score": 42}});
        assert_eq!(
            Template("Hi {{ account.name }}, score {{trigger.score}}{{account.owner}}".into())
                .render(&facts),
            "Hi Acme, score 42"
        );
        let mut violations = Violations::default();
        check_template("{{account.nope}} {{ run.id }}", "t", &mut violations);
        check_template("{{account.name", "u", &mut violations);
        let fields: Vec<_> = violations.iter().map(|(f, _)| f.to_owned()).collect();
        assert_eq!(fields, ["t", "u"]);
    }

    #[test]
    fn triggers_match_their_events() {
        let to_red = Trigger::BandChanged {
            from: None,
            to: Some("red".into()),
        };
        assert!(to_red.matches(&json!({"previous_band": "yellow", "band": "red"})));
        assert!(!to_red.matches(&json!({"previous_band": "red", "band": "yellow"})));
        let detractor = Trigger::Nps {
            category: "detractor".into(),
        };
        assert!(detractor.matches(&json!({"score": "3"})));
        assert!(!detractor.matches(&json!({"score": 9})));
        assert!(
            Trigger::ScoreDropped { points: 10.0 }
                .matches(&json!({"previous_score": 80.0, "score": 65.0}))
        );
        assert!(Trigger::RenewalApproaching { days: 90 }.matches(&json!({"threshold_days": 90})));
        assert!(!Trigger::RenewalApproaching { days: 90 }.matches(&json!({"threshold_days": 60})));
    }

    #[test]
    fn maturity_triggers_match_crossings_drops_and_long_stays() {
        let change = |previous: u8, level: u8| json!({"model": "rollout", "previous_level": previous.to_string(), "level": level.to_string()});
        let reached = |level| Trigger::MaturityReached {
            model: "rollout".into(),
            level,
        };
        // Past level 3: from below it to it or above, once.
        assert!(reached(Some(3)).matches(&change(2, 3)));
        assert!(reached(Some(3)).matches(&change(1, 4)));
        assert!(!reached(Some(3)).matches(&change(3, 4)));
        assert!(!reached(Some(3)).matches(&change(4, 3)));
        assert!(reached(None).matches(&change(0, 1)));
        assert!(
            !reached(None).matches(&json!({"model": "other", "previous_level": 1, "level": 2}))
        );
        let dropped = Trigger::MaturityDropped {
            model: "rollout".into(),
        };
        assert!(dropped.matches(&change(3, 2)) && !dropped.matches(&change(2, 3)));
        let stuck = Trigger::MaturityStuck {
            model: "rollout".into(),
            level: Some(1),
            min_days: 30,
        };
        let stay = |level: u8, days: u32| json!({"model": "rollout", "level": level.to_string(), "days_at_level": days.to_string()});
        assert!(stuck.matches(&stay(1, 45)));
        assert!(!stuck.matches(&stay(1, 20)) && !stuck.matches(&stay(2, 45)));
    }
}
