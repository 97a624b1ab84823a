//! The streaming RPCs: event chunks acknowledged once committed, and signals
//! of many accounts with flow control.

use std::fmt::Write as _;

use chrono::NaiveDate;
use sqlx::PgPool;
use tenure_platform::{ApiError, ApiResult, Violations};
use tenure_proto::ingestion::v1 as pb;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::events::{self, EventRecord};
use crate::signals;
use crate::state::IngestionApi;

/// A server stream of a call's answers, as tonic takes it.
pub type ResponseStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Chunks in flight between the stream reader and the client: a slow
/// client slows the producer instead of filling memory.
const BUFFERED: usize = 4;

/// Accounts whose signals are read in one batch.
const BATCH_ACCOUNTS: usize = 500;

/// Batches of a signals stream loaded at once.
const BATCHES_IN_FLIGHT: usize = 3;

/// Reads event chunks and answers each once it is committed, with a status
/// per event. A database failure ends the stream with that status; chunks
/// acknowledged before it are durable, later ones are not.
pub fn acknowledge_chunks(
    api: IngestionApi,
    mut inbound: Streaming<pb::StreamEventsRequest>,
) -> ResponseStream<pb::StreamEventsResponse> {
    let (sender, receiver) = tokio::sync::mpsc::channel(BUFFERED);
    let most = api.limits.max_stream_chunks;
    tokio::spawn(
        async move {
            let mut received: u64 = 0;
            loop {
                let chunk = match inbound.message().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(status) => {
                        // A chunk that could not be read ends the stream with
                        // its status, so the client knows it was not stored.
                        tracing::debug!(code = ?status.code(), "event stream ended unread");
                        let _ = sender
                            .send(Err(tenure_platform::error::inbound_status(status)))
                            .await;
                        break;
                    }
                };
                received += 1;
                if received > most {
                    let refused = Status::resource_exhausted(format!(
                        "a stream may carry at most {most} chunks; send the rest on a new stream"
                    ));
                    let _ = sender.send(Err(refused)).await;
                    break;
                }
                // One chunk at a time: which of two chunks holding the same
                // event is its original follows the order they were sent.
                let answer = api.ingest_chunk(chunk).await.map_err(Status::from);
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    break;
                }
            }
        }
        .instrument(tracing::Span::current()),
    );
    Box::pin(ReceiverStream::new(receiver))
}

impl IngestionApi {
    async fn ingest_chunk(
        &self,
        chunk: pb::StreamEventsRequest,
    ) -> ApiResult<pb::StreamEventsResponse> {
        if chunk.events.len() > self.limits.max_batch_items {
            return Err(ApiError::invalid(
                "events",
                format!(
                    "a chunk may hold at most {} events",
                    self.limits.max_batch_items
                ),
            ));
        }
        let size = chunk.events.len();
        let mut results: Vec<pb::EventResult> = Vec::with_capacity(size);
        let mut valid: Vec<(usize, EventRecord)> = Vec::with_capacity(size);
        let mut path = String::new();
        for (i, item) in chunk.events.iter().enumerate() {
            let mut violations = Violations::default();
            let mut checker = self.limits.checker(&mut violations);
            path.clear();
            let _ = write!(path, "events[{i}]");
            match events::event(&mut checker, item, &path) {
                Some(event) => valid.push((i, event)),
                None => results.push(rejected(i, violations.to_string())),
            }
        }
        let mut conn = self.pool.acquire().await?;
        let accounts: Vec<String> = valid
            .iter()
            .map(|(_, e)| e.account_id.as_str())
            .collect::<std::collections::BTreeSet<&str>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let unknown = self.accounts.unknown(&mut conn, &accounts).await?;
        let mut known: Vec<usize> = Vec::with_capacity(valid.len());
        let mut records: Vec<EventRecord> = Vec::with_capacity(valid.len());
        for (i, event) in valid {
            if unknown.contains(&event.account_id) {
                results.push(rejected(
                    i,
                    format!(
                        "events[{i}].account_id: names no known account: {:?}",
                        event.account_id
                    ),
                ));
            } else {
                known.push(i);
                records.push(event);
            }
        }
        // Months are created only for events of known accounts.
        let accepted = self.store_events(&mut conn, &records).await?;
        for (i, new) in known.iter().zip(&accepted) {
            let status = if *new {
                pb::EventStatus::Accepted
            } else {
                pb::EventStatus::Duplicate
            };
            results.push(pb::EventResult {
                index: *i as i32,
                status: status as i32,
                reason: String::new(),
            });
        }
        results.sort_by_key(|r| r.index);
        let count = |status: pb::EventStatus| {
            results.iter().filter(|r| r.status == status as i32).count() as i32
        };
        Ok(pb::StreamEventsResponse {
            chunk_id: chunk.chunk_id,
            accepted_count: count(pb::EventStatus::Accepted),
            duplicate_count: count(pb::EventStatus::Duplicate),
            rejected_count: count(pb::EventStatus::Rejected),
            results,
        })
    }
}

fn rejected(index: usize, reason: String) -> pb::EventResult {
    pb::EventResult {
        index: index as i32,
        status: pb::EventStatus::Rejected as i32,
        reason,
    }
}

/// What a signals stream answers.
#[derive(Debug)]
pub enum Wanted {
    /// The accounts given (every account when none is), at one day.
    Accounts {
        account_ids: Vec<String>,
        as_of: NaiveDate,
    },
    /// Each account at a day of its own.
    At(Vec<(String, NaiveDate)>),
}

/// Streams the signals `wanted` names, in batches loaded a few at a time
/// and sent in order; an unknown account is left out when `skip_unknown`,
/// and otherwise ends the stream with NOT_FOUND.
pub fn signals(
    pool: PgPool,
    wanted: Wanted,
    skip_unknown: bool,
) -> ResponseStream<pb::StreamAccountSignalsResponse> {
    let (sender, receiver) = tokio::sync::mpsc::channel(BUFFERED * 8);
    tokio::spawn(
        async move {
            let result: ApiResult<()> = async {
                let mut source = Batches::new(wanted);
                let load = |batch: Vec<(String, NaiveDate)>| {
                    let pool = pool.clone();
                    tokio::spawn(
                            async move {
                                signals::load_at(&pool, &batch, signals::Reading::Needed).await
                            }
                            .instrument(tracing::Span::current()),
                        )
                };
                // Batches load side by side, each on a connection of its
                // own (a batch's queries run one after another, so one batch
                // leaves the database and this service waiting on each
                // other), and are sent in order.
                let mut loading = std::collections::VecDeque::with_capacity(BATCHES_IN_FLIGHT);
                loop {
                    while loading.len() < BATCHES_IN_FLIGHT {
                        let batch = source.next(&pool).await?;
                        if batch.is_empty() {
                            break;
                        }
                        loading.push_back((batch.clone(), load(batch)));
                    }
                    let Some((batch, task)) = loading.pop_front() else {
                        break;
                    };
                    let loaded = task
                        .await
                        .map_err(|e| anyhow::anyhow!("loading signals: {e}"))??;
                    for (inputs, (account_id, as_of)) in loaded.iter().zip(&batch) {
                        let Some(inputs) = inputs else {
                            if skip_unknown {
                                continue;
                            }
                            return Err(ApiError::NotFound(format!(
                                "account {account_id} as of {as_of}"
                            )));
                        };
                        let message = pb::StreamAccountSignalsResponse {
                            signals: Some(signals::compute(inputs, inputs.as_of)),
                        };
                        if sender.send(Ok(message)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }
            .await;
            if let Err(error) = result {
                let _ = sender.send(Err(Status::from(error))).await;
            }
        }
        .instrument(tracing::Span::current()),
    );
    Box::pin(ReceiverStream::new(receiver))
}

/// The (account, day) pairs of a signals stream, a batch at a time: those
/// given, or every account in id order.
enum Batches {
    Every {
        after: Option<String>,
        as_of: NaiveDate,
    },
    Given(std::vec::IntoIter<Vec<(String, NaiveDate)>>),
    /// Past the last account.
    Done,
}

impl Batches {
    /// The pairs given, each once, in the order first given.
    fn new(wanted: Wanted) -> Self {
        let mut pairs = match wanted {
            Wanted::Accounts { account_ids, as_of } if account_ids.is_empty() => {
                return Self::Every { after: None, as_of };
            }
            Wanted::Accounts { account_ids, as_of } => account_ids
                .into_iter()
                .map(|id| (id, as_of))
                .collect::<Vec<_>>(),
            Wanted::At(pairs) => pairs,
        };
        let mut seen = std::collections::HashSet::with_capacity(pairs.len());
        pairs.retain(|pair| seen.insert(pair.clone()));
        let chunks: Vec<Vec<(String, NaiveDate)>> = pairs
            .chunks(BATCH_ACCOUNTS)
            .map(<[(String, NaiveDate)]>::to_vec)
            .collect();
        Self::Given(chunks.into_iter())
    }

    /// The next batch; empty once all were given, and from then on.
    async fn next(&mut self, pool: &PgPool) -> sqlx::Result<Vec<(String, NaiveDate)>> {
        match self {
            Self::Given(chunks) => Ok(chunks.next().unwrap_or_default()),
            Self::Done => Ok(Vec::new()),
            Self::Every { after, as_of } => {
                let as_of = *as_of;
                let page: Vec<String> = sqlx::query_scalar(
                    "SELECT account_id FROM ingestion.accounts \
                     WHERE ($1::text IS NULL OR account_id > $1) ORDER BY account_id LIMIT $2",
                )
                .bind(&*after)
                .bind(BATCH_ACCOUNTS as i64)
                .fetch_all(pool)
                .await?;
                match page.last() {
                    Some(last) => *after = Some(last.clone()),
                    None => *self = Self::Done,
                }
                Ok(page.into_iter().map(|id| (id, as_of)).collect())
            }
        }
    }
}
