//! `tenure import`: loads CSV or JSON Lines files of any record kind through
//! the ingestion API, with a progress bar, a summary, and the rejected rows
//! written to a file with their reasons.
//!
//! Columns are the proto field names. Timestamps are RFC 3339, dates
//! `YYYY-MM-DD`, money `<field>_minor` in minor units plus `currency`, enum
//! values their short lower-case names (`defect`, `p1`, `sponsor`); lists
//! (contact roles) are separated by `;`; CSV columns `attr_<name>` become
//! custom attributes of accounts. Event `properties` are a JSON object.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
use tenure_platform::client::{TracedChannel, channel};
use tenure_platform::time::{to_date, to_timestamp};
use tenure_proto::common::v1::Money;
use tenure_proto::ingestion::v1 as pb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tonic_types::StatusExt as _;

/// The kinds of file `tenure import` loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Accounts,
    Contacts,
    Subscriptions,
    Features,
    Tickets,
    Surveys,
    Invoices,
    Signals,
    Metrics,
    Events,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub accepted: u64,
    /// Stale upserts and duplicate events: acknowledged, not applied again.
    pub unchanged: u64,
    pub rejected: u64,
}

/// One row of the input, as a JSON object, with its line number.
struct Row {
    line: u64,
    fields: Map<String, Value>,
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut rows = Vec::new();
    if is_csv {
        let mut reader = csv::Reader::from_reader(file);
        let headers = reader.headers()?.clone();
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
            let fields = headers
                .iter()
                .zip(record.iter())
                .filter(|(_, value)| !value.is_empty())
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect();
            rows.push(Row {
                line: i as u64 + 2,
                fields,
            });
        }
    } else {
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let fields = match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(map)) => map,
                _ => bail!("{}: line {} is not a JSON object", path.display(), i + 1),
            };
            rows.push(Row {
                line: i as u64 + 1,
                fields,
            });
        }
    }
    Ok(rows)
}

/// Field readers over one row; each failure names the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn text(&self, name: &str) -> String {
        match self.0.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }

    fn time(&self, name: &str) -> Result<Option<prost_types::Timestamp>, String> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(None);
        }
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(to_timestamp(t.with_timezone(&Utc))))
            .map_err(|_| format!("{name}: {text:?} is not an RFC 3339 timestamp"))
    }

    fn date(&self, name: &str) -> Result<Option<tenure_proto::common::v1::Date>, String> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(|d| Some(to_date(d)))
            .map_err(|_| format!("{name}: {text:?} is not a YYYY-MM-DD date"))
    }

    fn number<T: std::str::FromStr + Default>(&self, name: &str) -> Result<T, String> {
        let text = self.text(name);
        if text.is_empty() {
            return Ok(T::default());
        }
        text.parse()
            .map_err(|_| format!("{name}: {text:?} is not a number"))
    }

    fn flag(&self, name: &str) -> Result<bool, String> {
        match self.text(name).to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" => Ok(false),
            "true" | "1" | "yes" => Ok(true),
            other => Err(format!("{name}: {other:?} is not true or false")),
        }
    }

    fn money(&self, name: &str) -> Result<Option<Money>, String> {
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
    fn choice(
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

    fn properties(&self, name: &str) -> Result<Option<prost_types::Struct>, String> {
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

fn attribute(value: &Value) -> pb::AttributeValue {
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

/// A row converted to the API's message for its kind.
enum Item {
    Account(pb::Account),
    Contact(pb::Contact),
    Subscription(pb::Subscription),
    Feature(pb::Feature),
    Ticket(pb::Ticket),
    Survey(pb::SurveyResponse),
    Invoice(pb::Invoice),
    Signal(pb::ExternalSignal),
    Metric(pb::SuccessMetric),
    Event(pb::UsageEvent),
}

fn convert(kind: Kind, row: &Map<String, Value>) -> Result<Item, String> {
    let f = Fields(row);
    Ok(match kind {
        Kind::Accounts => {
            let mut attributes: std::collections::BTreeMap<String, pb::AttributeValue> = row
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("attr_")
                        .map(|name| (name.to_owned(), attribute(v)))
                })
                .collect();
            if let Some(Value::Object(map)) = row.get("attributes") {
                attributes.extend(map.iter().map(|(k, v)| (k.clone(), attribute(v))));
            }
            Item::Account(pb::Account {
                account_id: f.text("account_id"),
                name: f.text("name"),
                segment: f.text("segment"),
                industry: f.text("industry"),
                owner: f.text("owner"),
                parent_account_id: f.text("parent_account_id"),
                lifecycle_stage: f.choice("lifecycle_stage", "LIFECYCLE_STAGE", |s| {
                    pb::LifecycleStage::from_str_name(s).map(|e| e as i32)
                })?,
                updated_at: f.time("updated_at")?,
                attributes,
            })
        }
        Kind::Contacts => {
            let roles_text = match row.get("roles") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => f
                    .text("roles")
                    .split(';')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>(),
            };
            let mut roles = Vec::new();
            for role in roles_text {
                let name = match role.to_ascii_lowercase().as_str() {
                    "sponsor" | "economic_sponsor" => "CONTACT_ROLE_ECONOMIC_SPONSOR".to_owned(),
                    other => format!("CONTACT_ROLE_{}", other.to_ascii_uppercase()),
                };
                roles.push(
                    pb::ContactRole::from_str_name(&name)
                        .ok_or_else(|| format!("roles: {role:?} is not a known role"))?
                        as i32,
                );
            }
            Item::Contact(pb::Contact {
                contact_id: f.text("contact_id"),
                account_id: f.text("account_id"),
                email: f.text("email"),
                name: f.text("name"),
                title: f.text("title"),
                roles,
                active: if f.text("active").is_empty() {
                    true
                } else {
                    f.flag("active")?
                },
                updated_at: f.time("updated_at")?,
            })
        }
        Kind::Subscriptions => Item::Subscription(pb::Subscription {
            subscription_id: f.text("subscription_id"),
            account_id: f.text("account_id"),
            status: f.choice("status", "SUBSCRIPTION_STATUS", |s| {
                pb::SubscriptionStatus::from_str_name(s).map(|e| e as i32)
            })?,
            term_start: f.date("term_start")?,
            term_end: f.date("term_end")?,
            arr: f.money("arr")?,
            seats: f.number("seats")?,
            auto_renew: f.flag("auto_renew")?,
            line_items: Vec::new(),
            updated_at: f.time("updated_at")?,
        }),
        Kind::Features => Item::Feature(pb::Feature {
            feature_name: f.text("feature_name"),
            display_name: f.text("display_name"),
            tier: f.choice("tier", "FEATURE_TIER", |s| {
                pb::FeatureTier::from_str_name(s).map(|e| e as i32)
            })?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Tickets => Item::Ticket(pb::Ticket {
            ticket_id: f.text("ticket_id"),
            account_id: f.text("account_id"),
            opened_at: f.time("opened_at")?,
            closed_at: f.time("closed_at")?,
            priority: f.choice("priority", "TICKET_PRIORITY", |s| {
                pb::TicketPriority::from_str_name(s).map(|e| e as i32)
            })?,
            category: f.choice("category", "TICKET_CATEGORY", |s| {
                pb::TicketCategory::from_str_name(s).map(|e| e as i32)
            })?,
            status: f.choice("status", "TICKET_STATUS", |s| {
                pb::TicketStatus::from_str_name(s).map(|e| e as i32)
            })?,
            csat: f.number("csat")?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Surveys => Item::Survey(pb::SurveyResponse {
            response_id: f.text("response_id"),
            account_id: f.text("account_id"),
            contact_id: f.text("contact_id"),
            kind: f.choice("kind", "SURVEY_KIND", |s| {
                pb::SurveyKind::from_str_name(s).map(|e| e as i32)
            })?,
            score: f.number("score")?,
            comment: f.text("comment"),
            responded_at: f.time("responded_at")?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Invoices => Item::Invoice(pb::Invoice {
            invoice_id: f.text("invoice_id"),
            account_id: f.text("account_id"),
            amount: f.money("amount")?,
            issued_on: f.date("issued_on")?,
            due_on: f.date("due_on")?,
            paid_on: f.date("paid_on")?,
            status: f.choice("status", "INVOICE_STATUS", |s| {
                pb::InvoiceStatus::from_str_name(s).map(|e| e as i32)
            })?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Signals => Item::Signal(pb::ExternalSignal {
            signal_id: f.text("signal_id"),
            account_id: f.text("account_id"),
            kind: f.choice("kind", "EXTERNAL_SIGNAL_KIND", |s| {
                pb::ExternalSignalKind::from_str_name(s).map(|e| e as i32)
            })?,
            occurred_at: f.time("occurred_at")?,
            source: f.text("source"),
            properties: f.properties("properties")?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Metrics => {
            let mut values = Vec::new();
            if let Some(Value::Array(items)) = row.get("values") {
                for item in items {
                    let Value::Object(map) = item else {
                        return Err("values: entries must be objects".into());
                    };
                    let v = Fields(map);
                    values.push(pb::MetricValue {
                        measured_on: v.date("measured_on")?,
                        value: v.number("value")?,
                    });
                }
            }
            Item::Metric(pb::SuccessMetric {
                metric_id: f.text("metric_id"),
                account_id: f.text("account_id"),
                name: f.text("name"),
                unit: f.text("unit"),
                baseline: f.number("baseline")?,
                target: f.number("target")?,
                direction: f.choice("direction", "METRIC_DIRECTION", |s| {
                    pb::MetricDirection::from_str_name(s).map(|e| e as i32)
                })?,
                values,
                updated_at: f.time("updated_at")?,
            })
        }
        Kind::Events => Item::Event(pb::UsageEvent {
            message_id: f.text("message_id"),
            account_id: f.text("account_id"),
            user_id: f.text("user_id"),
            event_name: f.text("event_name"),
            occurred_at: f.time("occurred_at")?,
            quantity: f.number("quantity")?,
            properties: f.properties("properties")?,
        }),
    })
}

/// Writes rejected rows with their reasons, as JSON Lines.
struct Rejects {
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl Rejects {
    fn write(&mut self, row: &Row, reason: &str) -> anyhow::Result<()> {
        if self.out.is_none() {
            let file = std::fs::File::create(&self.path)
                .with_context(|| format!("creating {}", self.path.display()))?;
            self.out = Some(std::io::BufWriter::new(file));
        }
        if let Some(out) = &mut self.out {
            let line = serde_json::json!({ "line": row.line, "reason": reason, "row": row.fields });
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

/// Imports `path` as records of `kind` through the ingestion API at `url`.
pub async fn run(
    url: &str,
    kind: Kind,
    path: &Path,
    rejects: &Path,
    batch: usize,
    progress: bool,
) -> anyhow::Result<Summary> {
    let rows = read_rows(path)?;
    let mut client = IngestionServiceClient::new(channel(url)?);
    let bar = if progress {
        indicatif::ProgressBar::new(rows.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rejected = Rejects {
        path: rejects.to_path_buf(),
        out: None,
    };
    let mut summary = Summary {
        rows: rows.len() as u64,
        ..Summary::default()
    };
    let mut ready: Vec<(&Row, Item)> = Vec::with_capacity(batch);
    for row in &rows {
        match convert(kind, &row.fields) {
            Ok(item) => ready.push((row, item)),
            Err(reason) => {
                rejected.write(row, &reason)?;
                summary.rejected += 1;
                bar.inc(1);
            }
        }
        if ready.len() >= batch {
            send(&mut client, &mut ready, &mut summary, &mut rejected, &bar).await?;
        }
    }
    send(&mut client, &mut ready, &mut summary, &mut rejected, &bar).await?;
    bar.finish_and_clear();
    if let Some(out) = &mut rejected.out {
        out.flush()?;
    }
    Ok(summary)
}

/// Sends one batch. Upserts reject a batch whole, naming bad items by
/// index: those rows go to the rejects file and the rest is sent again.
async fn send(
    client: &mut IngestionServiceClient<TracedChannel>,
    ready: &mut Vec<(&Row, Item)>,
    summary: &mut Summary,
    rejected: &mut Rejects,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let batch = std::mem::take(ready);
    if batch.is_empty() {
        return Ok(());
    }
    if matches!(batch[0].1, Item::Event(_)) {
        return send_events(client, batch, summary, rejected, bar).await;
    }
    let mut pending = batch;
    loop {
        let items: Vec<&Item> = pending.iter().map(|(_, item)| item).collect();
        match upsert(client, &items).await {
            Ok(result) => {
                summary.accepted += result.applied_count as u64;
                summary.unchanged += result.stale_count as u64;
                bar.inc(pending.len() as u64);
                return Ok(());
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                let reasons = item_reasons(&status);
                if reasons.is_empty() {
                    bail!("the batch was refused: {}", status.message());
                }
                let mut keep = Vec::with_capacity(pending.len());
                for (i, (row, item)) in pending.into_iter().enumerate() {
                    match reasons.get(&i) {
                        Some(reason) => {
                            rejected.write(row, reason)?;
                            summary.rejected += 1;
                            bar.inc(1);
                        }
                        None => keep.push((row, item)),
                    }
                }
                if keep.is_empty() {
                    return Ok(());
                }
                pending = keep;
            }
            Err(status) => bail!(
                "ingestion failed: {:?}: {}",
                status.code(),
                status.message()
            ),
        }
    }
}

/// Field violations by item index: `tickets[3].opened_at: …` → 3.
fn item_reasons(status: &tonic::Status) -> std::collections::BTreeMap<usize, String> {
    let mut reasons: std::collections::BTreeMap<usize, String> = std::collections::BTreeMap::new();
    for violation in status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default()
    {
        let index = violation
            .field
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .and_then(|(n, _)| n.parse::<usize>().ok());
        if let Some(index) = index {
            let entry = reasons.entry(index).or_default();
            if !entry.is_empty() {
                entry.push_str("; ");
            }
            entry.push_str(&format!("{}: {}", violation.field, violation.description));
        }
    }
    reasons
}

async fn upsert(
    client: &mut IngestionServiceClient<TracedChannel>,
    items: &[&Item],
) -> Result<pb::UpsertSummary, tonic::Status> {
    macro_rules! collect {
        ($variant:ident) => {
            items
                .iter()
                .filter_map(|i| {
                    if let Item::$variant(x) = i {
                        Some(x.clone())
                    } else {
                        None
                    }
                })
                .collect()
        };
    }
    let request_id = String::new();
    let summary = match items[0] {
        Item::Account(_) => {
            client
                .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
                    request_id,
                    accounts: collect!(Account),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Contact(_) => {
            client
                .batch_upsert_contacts(pb::BatchUpsertContactsRequest {
                    request_id,
                    contacts: collect!(Contact),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Subscription(_) => {
            client
                .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
                    request_id,
                    subscriptions: collect!(Subscription),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Feature(_) => {
            client
                .batch_upsert_features(pb::BatchUpsertFeaturesRequest {
                    request_id,
                    features: collect!(Feature),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Ticket(_) => {
            client
                .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
                    request_id,
                    tickets: collect!(Ticket),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Survey(_) => {
            client
                .batch_upsert_survey_responses(pb::BatchUpsertSurveyResponsesRequest {
                    request_id,
                    responses: collect!(Survey),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Invoice(_) => {
            client
                .batch_upsert_invoices(pb::BatchUpsertInvoicesRequest {
                    request_id,
                    invoices: collect!(Invoice),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Signal(_) => {
            client
                .batch_upsert_external_signals(pb::BatchUpsertExternalSignalsRequest {
                    request_id,
                    signals: collect!(Signal),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Metric(_) => {
            client
                .batch_upsert_success_metrics(pb::BatchUpsertSuccessMetricsRequest {
                    request_id,
                    metrics: collect!(Metric),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Event(_) => return Err(tonic::Status::internal("events are streamed")),
    };
    Ok(summary.unwrap_or_default())
}

async fn send_events(
    client: &mut IngestionServiceClient<TracedChannel>,
    batch: Vec<(&Row, Item)>,
    summary: &mut Summary,
    rejected: &mut Rejects,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let events: Vec<pb::UsageEvent> = batch
        .iter()
        .filter_map(|(_, item)| {
            if let Item::Event(e) = item {
                Some(e.clone())
            } else {
                None
            }
        })
        .collect();
    let chunk = pb::StreamEventsRequest {
        chunk_id: 0,
        events,
    };
    let mut acks = client
        .stream_events(tokio_stream::iter([chunk]))
        .await?
        .into_inner();
    while let Some(ack) = acks.message().await? {
        for result in &ack.results {
            match result.status() {
                pb::EventStatus::Accepted => summary.accepted += 1,
                pb::EventStatus::Duplicate => summary.unchanged += 1,
                _ => {
                    summary.rejected += 1;
                    if let Some((row, _)) = batch.get(result.index as usize) {
                        rejected.write(row, &result.reason)?;
                    }
                }
            }
        }
        bar.inc(ack.results.len() as u64);
    }
    Ok(())
}
