//! `tenure import`: loads CSV or JSON Lines files of any record kind through
//! the ingestion API, with a progress bar, a summary, and the rejected rows
//! written to a file with their reasons.
//!
//! Columns are the proto field names. Timestamps are RFC 3339, dates
//! `YYYY-MM-DD`, money `<field>_minor` in minor units plus `currency`, enum
//! values their short lower-case names (`defect`, `p1`, `sponsor`); lists
//! (contact roles) are separated by `;`; CSV columns `attr_<name>` become
//! custom attributes of accounts. Event `properties` are a JSON object.

mod calls;
mod convert;
mod rows;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use tenure_platform::config::PeerConfig;
use tenure_proto::ingestion::v1 as pb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tonic_types::StatusExt as _;

use calls::{Clients, EventSender, upsert};
use convert::{Item, convert};
use rows::{Row, Rows};

/// Events per stream chunk at most (the ingestion service's default limit).
const EVENT_CHUNK: usize = 5000;

/// The kinds of file `tenure import` loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
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
    /// Success plans.
    Plans,
    /// Advocacy activities: references, case studies, reviews, referrals.
    Advocacy,
    Events,
    /// Renewal outcomes, loaded through the renewals API.
    Outcomes,
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

/// Imports `path` as records of `kind` through the API of the service that
/// owns them (ingestion, or renewals for outcomes).
pub async fn run(
    peers: &PeerConfig,
    kind: Kind,
    path: &Path,
    rejects: &Path,
    batch: usize,
    progress: bool,
) -> anyhow::Result<Summary> {
    let rows = Rows::open(path)?;
    let mut client = Clients {
        ingestion: IngestionServiceClient::new(peers.channel(&peers.ingestion_url)?),
        renewals: RenewalsServiceClient::new(peers.channel(&peers.renewals_url)?),
    };
    let bar = if progress {
        indicatif::ProgressBar::new(Rows::count(path)?)
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
    let mut summary = Summary::default();
    let mut events = EventSender::new(client.ingestion.clone());
    // Events go in chunks five times larger (at most the server's default
    // 5,000 per chunk), several at once.
    let batch = if kind == Kind::Events {
        (batch * 5).min(EVENT_CHUNK)
    } else {
        batch
    };
    let mut ready: Vec<(Row, Item)> = Vec::with_capacity(batch);
    for row in rows {
        let row = row?;
        summary.rows += 1;
        match convert(kind, &row.fields) {
            Ok(item) => ready.push((row, item)),
            Err(reason) => {
                rejected.write(&row, &reason)?;
                summary.rejected += 1;
                bar.inc(1);
            }
        }
        if ready.len() >= batch {
            let full = std::mem::take(&mut ready);
            send(
                &mut client,
                &mut events,
                full,
                &mut summary,
                &mut rejected,
                &bar,
            )
            .await?;
        }
    }
    send(
        &mut client,
        &mut events,
        ready,
        &mut summary,
        &mut rejected,
        &bar,
    )
    .await?;
    events.finish(&mut summary, &mut rejected, &bar).await?;
    bar.finish_and_clear();
    if let Some(out) = &mut rejected.out {
        out.flush()?;
    }
    Ok(summary)
}

/// Sends one batch. Upserts reject a batch whole, naming bad items by
/// index: those rows go to the rejects file and the rest is sent again.
async fn send(
    client: &mut Clients,
    events: &mut EventSender,
    batch: Vec<(Row, Item)>,
    summary: &mut Summary,
    rejected: &mut Rejects,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    if matches!(batch[0].1, Item::Event(_)) {
        return events.send(batch, summary, rejected, bar).await;
    }
    let mut pending = batch;
    loop {
        let items: Vec<&Item> = pending.iter().map(|(_, item)| item).collect();
        // Upserts keep the newest version of each item: sending a batch
        // again changes nothing it already changed.
        let answer = tenure_platform::client::retry_unavailable(|| {
            let mut clients = client.clone();
            let items = items.clone();
            async move { upsert(&mut clients, &items).await }
        })
        .await;
        match answer {
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
                            rejected.write(&row, reason)?;
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
                "the import call failed: {:?}: {}",
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

/// The files of a customer base (as `tenure generate` writes it) in the
/// order they must be imported (features and parents before what refers to
/// them), with their kinds.
pub const BASE_FILES: [(Kind, &str); 13] = [
    (Kind::Features, "features.jsonl"),
    (Kind::Accounts, "accounts.jsonl"),
    (Kind::Contacts, "contacts.jsonl"),
    (Kind::Subscriptions, "subscriptions.jsonl"),
    (Kind::Tickets, "tickets.jsonl"),
    (Kind::Surveys, "surveys.jsonl"),
    (Kind::Invoices, "invoices.jsonl"),
    (Kind::Signals, "signals.jsonl"),
    (Kind::Metrics, "metrics.jsonl"),
    (Kind::Plans, "plans.jsonl"),
    (Kind::Advocacy, "advocacy.jsonl"),
    (Kind::Events, "events.jsonl"),
    (Kind::Outcomes, "outcomes.jsonl"),
];

/// Imports every file of a generated base in `dir` (see
/// [`BASE_FILES`]), in the order that keeps references whole;
/// files missing from `dir` are skipped.
pub async fn base(
    peers: &PeerConfig,
    dir: &Path,
    progress: bool,
) -> anyhow::Result<Vec<(Kind, Summary)>> {
    let mut summaries = Vec::new();
    for (kind, name) in BASE_FILES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let rejects = dir.join(format!("{name}.rejected.jsonl"));
        let summary = run(peers, kind, &path, &rejects, 1000, progress)
            .await
            .with_context(|| format!("importing {}", path.display()))?;
        summaries.push((kind, summary));
    }
    Ok(summaries)
}

/// The first `limit` usage events of an events file (CSV or JSON Lines),
/// read as [`run`] reads them: for tools that send events themselves, such
/// as the ingest benchmark.
pub fn read_events(path: &Path, limit: usize) -> anyhow::Result<Vec<pb::UsageEvent>> {
    let mut events = Vec::with_capacity(limit.min(1 << 20));
    for row in Rows::open(path)?.take(limit) {
        let row = row?;
        match convert(Kind::Events, &row.fields) {
            Ok(Item::Event(event)) => events.push(event),
            Ok(_) => bail!("{}: line {} is not a usage event", path.display(), row.line),
            Err(reason) => bail!("{}: line {}: {reason}", path.display(), row.line),
        }
    }
    Ok(events)
}
