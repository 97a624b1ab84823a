//! Reading an import file: CSV or JSON Lines rows as JSON objects, and
//! field readers that name the field in every error.

use std::io::BufRead as _;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
use tenure_platform::time::{to_date, to_timestamp};
use tenure_proto::common::v1::Money;
use tenure_proto::ingestion::v1 as pb;

/// One row of the input, as a JSON object, with its line number.
pub(super) struct Row {
    pub(super) line: u64,
    pub(super) fields: Map<String, Value>,
}

/// The rows of a file, read one at a time: `.csv` as CSV with a header
/// row, anything else as JSON Lines.
pub(super) enum Rows {
    Csv {
        path: String,
        headers: csv::StringRecord,
        records: csv::StringRecordsIntoIter<std::fs::File>,
        line: u64,
    },
    Json {
        path: String,
        lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
        line: u64,
    },
}

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

impl Rows {
    pub(super) fn open(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let name = path.display().to_string();
        Ok(if is_csv(path) {
            let mut reader = csv::Reader::from_reader(file);
            let headers = reader.headers()?.clone();
            Rows::Csv {
                path: name,
                headers,
                records: reader.into_records(),
                line: 1,
            }
        } else {
            Rows::Json {
                path: name,
                lines: std::io::BufReader::new(file).lines(),
                line: 0,
            }
        })
    }

    /// Rows in the file, for the progress bar (a quick first pass).
    pub(super) fn count(path: &Path) -> anyhow::Result<u64> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut count = 0_u64;
        for line in std::io::BufReader::new(file).split(b'\n') {
            if !line?.iter().all(u8::is_ascii_whitespace) {
                count += 1;
            }
        }
        // A CSV file's first line is its header.
        Ok(if is_csv(path) {
            count.saturating_sub(1)
        } else {
            count
        })
    }
}

impl Iterator for Rows {
    type Item = anyhow::Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Rows::Csv {
                path,
                headers,
                records,
                line,
            } => {
                let record = records.next()?;
                *line += 1;
                Some(
                    record
                        .with_context(|| format!("{path}: row {line}"))
                        .map(|record| Row {
                            line: *line,
                            fields: headers
                                .iter()
                                .zip(record.iter())
                                .filter(|(_, value)| !value.is_empty())
                                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                                .collect(),
                        }),
                )
            }
            Rows::Json { path, lines, line } => loop {
                let text = match lines.next()? {
                    Ok(text) => text,
                    Err(e) => return Some(Err(e.into())),
                };
                *line += 1;
                if text.trim().is_empty() {
                    continue;
                }
                return Some(match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(fields)) => Ok(Row {
                        line: *line,
                        fields,
                    }),
                    _ => Err(anyhow::anyhow!("{path}: line {line} is not a JSON object")),
                });
            },
        }
    }
}

/// Field readers over one row; each failure names the field.
pub(super) struct Fields<'a>(pub(super) &'a Map<String, Value>);

impl Fields<'_> {
    pub(super) fn text(&self, name: &str) -> String {
        match self.0.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }

    pub(super) fn time(&self, name: &str) -> Result<Option<prost_types::Timestamp>, String> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(to_timestamp(t.with_timezone(&Utc))))
            .map_err(|_| format!("{name}: {text:?} is not an RFC 3339 timestamp"))
    }

    pub(super) fn date(
        &self,
        name: &str,
    ) -> Result<Option<tenure_proto::common::v1::Date>, String> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(|d| Some(to_date(d)))
            .map_err(|_| format!("{name}: {text:?} is not a YYYY-MM-DD date"))
    }

    pub(super) fn number<T: std::str::FromStr + Default>(&self, name: &str) -> Result<T, String> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(T::default());
        }
        text.parse()
            .map_err(|_| format!("{name}: {text:?} is not a number"))
    }

    pub(super) fn flag(&self, name: &str) -> Result<bool, String> {
        match self.text(name).to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" => Ok(false),
            "true" | "1" | "yes" => Ok(true),
            other => Err(format!("{name}: {other:?} is not true or false")),
        }
    }

    pub(super) fn money(&self, name: &str) -> Result<Option<Money>, String> {
        let minor = format!("{name}_minor");
        if self.text(&minor).is_empty() {
            return Ok(None);
        }
        Ok(Some(Money {
            currency_code: self.text("currency"),
            amount_minor: self.number(&minor)?,
        }))
    }

    /// An enum by its short name: `defect` for `TICKET_CATEGORY_DEFECT`.
    pub(super) fn choice(
        &self,
        name: &str,
        prefix: &str,
        parse: fn(&str) -> Option<i32>,
    ) -> Result<i32, String> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(0);
        }
        parse(&format!(
            "{prefix}_{}",
            text.to_ascii_uppercase().replace(['-', ' '], "_")
        ))
        .ok_or_else(|| format!("{name}: {text:?} is not a known value"))
    }

    pub(super) fn properties(&self, name: &str) -> Result<Option<prost_types::Struct>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(json_struct(map))),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(map)) => Ok(Some(json_struct(&map))),
                _ => Err(format!("{name}: is not a JSON object")),
            },
            Some(_) => Err(format!("{name}: is not a JSON object")),
        }
    }
}

fn json_struct(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect(),
    }
}

fn json_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(json_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub(super) fn attribute(value: &Value) -> pb::AttributeValue {
    use pb::attribute_value::Value as A;
    let value = match value {
        Value::Bool(b) => A::Boolean(*b),
        Value::Number(n) => A::Number(n.as_f64().unwrap_or_default()),
        Value::String(s) => match (
            s.parse::<f64>(),
            s.as_str(),
            NaiveDate::parse_from_str(s, "%Y-%m-%d"),
        ) {
            (Ok(n), _, _) => A::Number(n),
            (_, "true", _) => A::Boolean(true),
            (_, "false", _) => A::Boolean(false),
            (_, _, Ok(d)) => A::Date(to_date(d)),
            _ => A::Category(s.clone()),
        },
        other => A::Category(other.to_string()),
    };
    pb::AttributeValue { value: Some(value) }
}
