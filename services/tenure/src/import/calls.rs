//! The API calls that load one batch of converted rows.

use tenure_platform::client::{TracedChannel, retry_unavailable};
use tenure_proto::ingestion::v1 as pb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::renewals::v1 as rpb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;

use super::convert::Item;
use super::rows::Row;
use super::{Rejects, Summary};

/// The services an import writes to.
#[derive(Clone)]
pub(super) struct Clients {
    pub(super) ingestion: IngestionServiceClient<TracedChannel>,
    pub(super) renewals: RenewalsServiceClient<TracedChannel>,
}

pub(super) async fn upsert(
    clients: &mut Clients,
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
    let client = &mut clients.ingestion;
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
        Item::Plan(_) => {
            client
                .batch_upsert_success_plans(pb::BatchUpsertSuccessPlansRequest {
                    request_id,
                    plans: collect!(Plan),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Advocacy(_) => {
            client
                .batch_upsert_advocacy_activities(pb::BatchUpsertAdvocacyActivitiesRequest {
                    request_id,
                    activities: collect!(Advocacy),
                })
                .await?
                .into_inner()
                .summary
        }
        Item::Outcome(_) => {
            let recorded = clients
                .renewals
                .batch_record_renewal_outcomes(rpb::BatchRecordRenewalOutcomesRequest {
                    request_id,
                    outcomes: collect!(Outcome),
                })
                .await?
                .into_inner();
            Some(pb::UpsertSummary {
                applied_count: recorded.recorded_count,
                stale_count: recorded.unchanged_count,
            })
        }
        Item::Event(_) => return Err(tonic::Status::internal("events are streamed")),
    };
    Ok(summary.unwrap_or_default())
}

/// Event chunks in flight at once, each on a stream of its own, so that
/// ingestion writes several in parallel.
const EVENT_STREAMS: usize = 4;

/// Sends chunks of events with up to [`EVENT_STREAMS`] in flight, and
/// counts each chunk's answers as it arrives.
pub(super) struct EventSender {
    client: IngestionServiceClient<TracedChannel>,
    inflight: tokio::task::JoinSet<anyhow::Result<(Vec<Row>, Vec<pb::EventResult>)>>,
}

impl EventSender {
    pub(super) fn new(client: IngestionServiceClient<TracedChannel>) -> Self {
        Self {
            client,
            inflight: tokio::task::JoinSet::new(),
        }
    }

    /// Sends `batch` once fewer than [`EVENT_STREAMS`] chunks are in flight.
    pub(super) async fn send(
        &mut self,
        batch: Vec<(Row, Item)>,
        summary: &mut Summary,
        rejected: &mut Rejects,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        while self.inflight.len() >= EVENT_STREAMS {
            self.settle_one(summary, rejected, bar).await?;
        }
        let (rows, events): (Vec<Row>, Vec<pb::UsageEvent>) = batch
            .into_iter()
            .filter_map(|(row, item)| match item {
                Item::Event(event) => Some((row, event)),
                _ => None,
            })
            .unzip();
        let client = self.client.clone();
        self.inflight.spawn(async move {
            // A chunk is stored whole or not at all, and its events keep
            // their message ids: sent again, none is stored twice.
            let results =
                retry_unavailable(|| stream_events(client.clone(), events.clone())).await?;
            Ok((rows, results))
        });
        Ok(())
    }

    /// Waits for every chunk in flight.
    pub(super) async fn finish(
        &mut self,
        summary: &mut Summary,
        rejected: &mut Rejects,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        while !self.inflight.is_empty() {
            self.settle_one(summary, rejected, bar).await?;
        }
        Ok(())
    }

    async fn settle_one(
        &mut self,
        summary: &mut Summary,
        rejected: &mut Rejects,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        if let Some(joined) = self.inflight.join_next().await {
            let (rows, results) = joined??;
            tally_events(&rows, &results, summary, rejected, bar)?;
        }
        Ok(())
    }
}

/// Streams one chunk of events and returns the status of each, in the
/// order sent.
async fn stream_events(
    mut client: IngestionServiceClient<TracedChannel>,
    events: Vec<pb::UsageEvent>,
) -> Result<Vec<pb::EventResult>, tonic::Status> {
    let chunk = pb::StreamEventsRequest {
        chunk_id: 0,
        events,
    };
    let mut acks = client
        .stream_events(tokio_stream::iter([chunk]))
        .await?
        .into_inner();
    let mut results = Vec::new();
    while let Some(ack) = acks.message().await? {
        results.extend(ack.results);
    }
    results.sort_by_key(|r| r.index);
    Ok(results)
}

/// Counts the answers to a chunk of event rows; rejected rows go to the
/// rejects file with their reasons.
fn tally_events(
    rows: &[Row],
    results: &[pb::EventResult],
    summary: &mut Summary,
    rejected: &mut Rejects,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    for result in results {
        match result.status() {
            pb::EventStatus::Accepted => summary.accepted += 1,
            pb::EventStatus::Duplicate => summary.unchanged += 1,
            _ => {
                summary.rejected += 1;
                if let Some(row) = rows.get(result.index as usize) {
                    rejected.write(row, &result.reason)?;
                }
            }
        }
    }
    bar.inc(results.len() as u64);
    Ok(())
}
