//! Playbook definitions: declarative JSON documents of a trigger and a graph
//! of steps, validated before they are stored.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Deserialize;
use tenure_platform::Violations;

/// Triggers a playbook can start on.
pub const TRIGGERS: &[&str] = &[
    "health_band_changed",
    "score_dropped",
    "renewal_approaching",
    "sponsor_changed",
    "champion_changed",
    "nps_response",
    "onboarding_stalled",
    "usage_dropped",
    "advocate_found",
    "external_signal",
    "schedule",
    "manual",
    "maturity_level_reached",
    "maturity_level_dropped",
    "maturity_level_stuck",
];

/// Step types and the exits each must name.
const STEP_TYPES: &[(&str, &[&str])] = &[
    ("task", &["next"]),
    ("email", &["next"]),
    ("webhook", &["next"]),
    ("wait", &["next"]),
    ("branch", &["then", "else"]),
    ("end", &[]),
];

const MAX_STEPS: usize = 200;
const MAX_TITLE: usize = 200;

#[derive(Debug, Deserialize)]
pub struct Definition {
    pub name: String,
    pub title: String,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    /// audience, cooldown_days, exit_when: read when compiled.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub then: Option<String>,
    #[serde(default, rename = "else")]
    pub otherwise: Option<String>,
    /// For a wait on a condition: where to go when it times out.
    #[serde(default)]
    pub on_timeout: Option<String>,
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Step {
    fn exit(&self, name: &str) -> Option<&str> {
        match name {
            "next" => self.next.as_deref(),
            "then" => self.then.as_deref(),
            "else" => self.otherwise.as_deref(),
            "on_timeout" => self.on_timeout.as_deref(),
            _ => None,
        }
    }
}

fn is_slug(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The formats a definition may be written in (the API's `DefinitionFormat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum Format {
    Json = 1,
    Yaml = 2,
}

impl Format {
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::Json),
            2 => Some(Self::Yaml),
            _ => None,
        }
    }
}

/// Parses and validates a JSON definition's structure.
pub fn parse_json(text: &str, field: &str, violations: &mut Violations) -> Option<Definition> {
    parse(text, Format::Json, field, violations)
}

/// Parses and validates a definition's structure.
pub fn parse(
    text: &str,
    format: Format,
    field: &str,
    violations: &mut Violations,
) -> Option<Definition> {
    let parsed = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        Format::Yaml => yaml_serde::from_str(text).map_err(|e| e.to_string()),
    };
    let definition: Definition = match parsed {
        Ok(definition) => definition,
        Err(error) => {
            violations.add(field, format!("is not a valid playbook document: {error}"));
            return None;
        }
    };
    // The document's strings reach Postgres: an escaped NUL (`\u0000`,
    // YAML's `\0`) is refused like a raw one.
    let document: Option<serde_json::Value> = match format {
        Format::Json => serde_json::from_str(text).ok(),
        Format::Yaml => yaml_serde::from_str(text).ok(),
    };
    let mut at = String::new();
    if document.is_some_and(|d| nul_at(&d, &mut at)) {
        violations.add(
            field,
            format!("must not contain the NUL character (U+0000) (at {at})"),
        );
        return None;
    }
    let before = violations.len();
    validate(&definition, field, violations);
    (violations.len() == before).then_some(definition)
}

/// Whether a key or string of `document` holds NUL; `path` is left
/// naming it (`steps[2].title`).
fn nul_at(document: &serde_json::Value, path: &mut String) -> bool {
    use serde_json::Value;
    let mark = path.len();
    let found = match document {
        Value::String(text) => return text.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            path.truncate(mark);
            path.push_str(&format!("[{i}]"));
            nul_at(item, path)
        }),
        Value::Object(fields) => fields.iter().any(|(key, value)| {
            path.truncate(mark);
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            key.contains('\0') || nul_at(value, path)
        }),
        _ => false,
    };
    if !found {
        path.truncate(mark);
    }
    found
}

fn validate(definition: &Definition, field: &str, violations: &mut Violations) {
    violations.check(
        is_slug(&definition.name),
        format!("{field}.name"),
        "must be 1-64 characters of a-z, 0-9, - and _",
    );
    violations.require_text(&definition.title, format!("{field}.title"), MAX_TITLE);
    violations.check(
        TRIGGERS.contains(&definition.trigger.kind.as_str()),
        format!("{field}.trigger.type"),
        format!("must be one of {}", TRIGGERS.join(", ")),
    );
    let steps = &definition.steps;
    if steps.is_empty() || steps.len() > MAX_STEPS {
        violations.add(
            format!("{field}.steps"),
            format!("must hold 1 to {MAX_STEPS} steps"),
        );
        return;
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        let path = format!("{field}.steps[{i}]");
        violations.check(
            is_slug(&step.id),
            format!("{path}.id"),
            "must be 1-64 characters of a-z, 0-9, - and _",
        );
        if index.insert(step.id.as_str(), i).is_some() {
            violations.add(format!("{path}.id"), "is used by an earlier step");
        }
    }
    for (i, step) in steps.iter().enumerate() {
        let path = format!("{field}.steps[{i}]");
        let Some((_, exits)) = STEP_TYPES.iter().find(|(kind, _)| *kind == step.kind) else {
            let known: Vec<_> = STEP_TYPES.iter().map(|(k, _)| *k).collect();
            violations.add(
                format!("{path}.type"),
                format!("must be one of {}", known.join(", ")),
            );
            continue;
        };
        for exit in ["next", "then", "else"] {
            let named = step.exit(exit);
            match (exits.contains(&exit), named) {
                (true, None) => {
                    violations.add(format!("{path}.{exit}"), "is required for this step type")
                }
                (false, Some(_)) => violations.add(
                    format!("{path}.{exit}"),
                    "is not allowed for this step type",
                ),
                (true, Some(target)) if !index.contains_key(target) => violations.add(
                    format!("{path}.{exit}"),
                    format!("names no step: {target:?}"),
                ),
                _ => {}
            }
        }
    }
    // Every step must be reachable from the first.
    let mut seen = HashSet::from([0usize]);
    let mut queue = VecDeque::from([0usize]);
    while let Some(i) = queue.pop_front() {
        for exit in ["next", "then", "else", "on_timeout"] {
            if let Some(&target) = steps[i].exit(exit).and_then(|t| index.get(t)) {
                if seen.insert(target) {
                    queue.push_back(target);
                }
            }
        }
    }
    for (i, _) in steps.iter().enumerate().filter(|(i, _)| !seen.contains(i)) {
        violations.add(
            format!("{field}.steps[{i}]"),
            "is not reachable from the first step",
        );
    }
    // A loop must pass a wait, or it would run again and again at once.
    if let Some(i) = loop_without_wait(steps, &index) {
        violations.add(
            format!("{field}.steps[{i}]"),
            "is on a loop with no wait step",
        );
    }
}

/// A step on a cycle of the step graph that passes no `wait`, if any.
fn loop_without_wait(steps: &[Step], index: &HashMap<&str, usize>) -> Option<usize> {
    // 0 unvisited, 1 on the current path, 2 done.
    fn visit(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        mark: &mut [u8],
    ) -> Option<usize> {
        mark[i] = 1;
        for exit in ["next", "then", "else", "on_timeout"] {
            let Some(&j) = steps[i].exit(exit).and_then(|t| index.get(t)) else {
                continue;
            };
            if steps[j].kind == "wait" {
                continue;
            }
            match mark[j] {
                1 => return Some(j),
                0 => {
                    if let Some(found) = visit(j, steps, index, mark) {
                        return Some(found);
                    }
                }
                _ => {}
            }
        }
        mark[i] = 2;
        None
    }
    let mut mark = vec![0u8; steps.len()];
    (0..steps.len())
        .filter(|i| steps[*i].kind != "wait")
        .find_map(|i| {
            if mark[i] == 0 {
                visit(i, steps, index, &mut mark)
            } else {
                None
            }
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn escaped_nul_is_refused_with_its_place() {
        let text = GOOD.replace("Onboarding stalled", "Onboarding\\u0000stalled");
        let mut violations = Violations::default();
        assert!(parse_json(&text, "definition", &mut violations).is_none());
        assert_eq!(
            violations.iter().collect::<Vec<_>>(),
            [(
                "definition",
                "must not contain the NUL character (U+0000) (at title)"
            )]
        );
    }

    /// A valid definition: a task, a wait and a branch back.
    pub(crate) const GOOD: &str = r#"{
      "name": "onboarding-stalled", "title": "Onboarding stalled",
      "trigger": {"type": "onboarding_stalled", "utilization_below_pct": 30, "days_after_start": 30},
      "steps": [
        {"id": "call", "type": "task", "title": "Call the champion", "next": "wait"},
        {"id": "wait", "type": "wait", "for": "7d", "next": "check"},
        {"id": "check", "type": "branch", "condition": {"band": "green"}, "then": "done", "else": "call"},
        {"id": "done", "type": "end"}
      ]
    }"#;

    #[test]
    fn names_each_broken_field() {
        let broken = GOOD
            .replace(
                r#""type": "wait", "for": "7d", "next": "check""#,
                r#""type": "sleep", "next": "check""#,
            )
            .replace(r#""else": "call""#, r#""else": "nowhere""#)
            .replace(
                r#"{"id": "done", "type": "end"}"#,
                r#"{"id": "done", "type": "end"}, {"id": "orphan", "type": "end"}"#,
            );
        let mut violations = Violations::default();
        assert!(parse_json(&broken, "definition", &mut violations).is_none());
        let fields: Vec<_> = violations.iter().map(|(f, _)| f.to_owned()).collect();
        assert_eq!(
            fields,
            [
                "definition.steps[1].type",
                "definition.steps[2].else",
                "definition.steps[4]"
            ]
        );
    }

    #[test]
    fn rejects_a_loop_that_never_waits() {
        let spinning = GOOD.replace(r#""then": "done", "else": "call""#, r#""then": "done", "else": "again""#)
            .replace(
                r#"{"id": "done", "type": "end"}"#,
                r#"{"id": "done", "type": "end"}, {"id": "again", "type": "task", "title": "Again", "next": "check"}"#,
            );
        let mut violations = Violations::default();
        assert!(parse_json(&spinning, "definition", &mut violations).is_none());
        let fields: Vec<_> = violations.iter().map(|(f, _)| f.to_owned()).collect();
        assert_eq!(fields, ["definition.steps[2]"]);
        assert!(
            parse_json(GOOD, "definition", &mut Violations::default()).is_some(),
            "a loop through a wait is fine"
        );
    }

    #[test]
    fn reports_malformed_json() {
        let mut violations = Violations::default();
        assert!(parse_json("{", "definition", &mut violations).is_none());
        assert_eq!(violations.iter().next().unwrap().0, "definition");
    }
}
