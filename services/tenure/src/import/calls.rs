//! The API calls that load one batch of converted rows.

use tenure_platform::client::TracedChannel;
use tenure_proto::ingestion::v1 as pb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::renewals::v1 as rpb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;

use super::convert::Item;
use super::rows::Row;
use super::{Rejects, Summary};

/// The services an import writes to.
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

pub(super) async fn send_events(
    client: &mut IngestionServiceClient<TracedChannel>,
    batch: Vec<(Row, Item)>,
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
