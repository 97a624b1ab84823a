//! The gRPC edge of ingestion: validates requests into domain values, runs
//! each write in one transaction with its outbox messages, and answers.
//! The service trait maps each call to a method of [`IngestionApi`]: the
//! writes in [`upserts`], the reads in [`reads`].

mod reads;
mod upserts;
mod value;

use reads::non_empty;
pub(crate) use reads::{as_of_date, inputs_of};

use chrono::{Duration, NaiveDate, Utc};
use sqlx::types::Json;
use tenure_platform::input::Id;
use tenure_platform::{ApiError, ApiResult, Violations, paging, time};
use tenure_proto::ingestion::v1::{self as pb, ingestion_service_server::IngestionService};
use tonic::{Request, Response, Status, Streaming};

use crate::accounts::{self, AccountFilter, AccountRecord};
use crate::convert::{self, Checker, MAX_ID, MAX_LABEL, MAX_NAME, attribute_to_proto};
use crate::state::IngestionApi;
use crate::stream::ResponseStream;
use crate::writes::{Changes, parse_batch, require_accounts, summary};
use crate::{changes, records, signals, timeline};

fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl IngestionService for IngestionApi {
    type StreamEventsStream = ResponseStream<pb::StreamEventsResponse>;
    type StreamAccountSignalsStream = ResponseStream<pb::StreamAccountSignalsResponse>;

    async fn batch_upsert_accounts(
        &self,
        request: Request<pb::BatchUpsertAccountsRequest>,
    ) -> Result<Response<pb::BatchUpsertAccountsResponse>, Status> {
        respond(self.batch_upsert_accounts(request.into_inner()).await)
    }

    async fn batch_upsert_contacts(
        &self,
        request: Request<pb::BatchUpsertContactsRequest>,
    ) -> Result<Response<pb::BatchUpsertContactsResponse>, Status> {
        respond(self.batch_upsert_contacts(request.into_inner()).await)
    }

    async fn batch_upsert_subscriptions(
        &self,
        request: Request<pb::BatchUpsertSubscriptionsRequest>,
    ) -> Result<Response<pb::BatchUpsertSubscriptionsResponse>, Status> {
        respond(self.batch_upsert_subscriptions(request.into_inner()).await)
    }

    async fn batch_upsert_features(
        &self,
        request: Request<pb::BatchUpsertFeaturesRequest>,
    ) -> Result<Response<pb::BatchUpsertFeaturesResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertFeatures",
                &r.request_id,
                &r,
                ("features", &r.features),
                convert::feature,
                |s| pb::BatchUpsertFeaturesResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_tickets(
        &self,
        request: Request<pb::BatchUpsertTicketsRequest>,
    ) -> Result<Response<pb::BatchUpsertTicketsResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertTickets",
                &r.request_id,
                &r,
                ("tickets", &r.tickets),
                convert::ticket,
                |s| pb::BatchUpsertTicketsResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_survey_responses(
        &self,
        request: Request<pb::BatchUpsertSurveyResponsesRequest>,
    ) -> Result<Response<pb::BatchUpsertSurveyResponsesResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertSurveyResponses",
                &r.request_id,
                &r,
                ("responses", &r.responses),
                convert::survey,
                |s| pb::BatchUpsertSurveyResponsesResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_invoices(
        &self,
        request: Request<pb::BatchUpsertInvoicesRequest>,
    ) -> Result<Response<pb::BatchUpsertInvoicesResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertInvoices",
                &r.request_id,
                &r,
                ("invoices", &r.invoices),
                convert::invoice,
                |s| pb::BatchUpsertInvoicesResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_external_signals(
        &self,
        request: Request<pb::BatchUpsertExternalSignalsRequest>,
    ) -> Result<Response<pb::BatchUpsertExternalSignalsResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertExternalSignals",
                &r.request_id,
                &r,
                ("signals", &r.signals),
                convert::external_signal,
                |s| pb::BatchUpsertExternalSignalsResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_success_metrics(
        &self,
        request: Request<pb::BatchUpsertSuccessMetricsRequest>,
    ) -> Result<Response<pb::BatchUpsertSuccessMetricsResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertSuccessMetrics",
                &r.request_id,
                &r,
                ("metrics", &r.metrics),
                convert::success_metric,
                |s| pb::BatchUpsertSuccessMetricsResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        respond(self.ingest_events(request.into_inner()).await)
    }

    async fn stream_events(
        &self,
        request: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        Ok(Response::new(crate::stream::acknowledge_chunks(
            self.clone(),
            request.into_inner(),
        )))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        respond(self.get_account(request.into_inner()).await)
    }

    async fn batch_get_accounts(
        &self,
        request: Request<pb::BatchGetAccountsRequest>,
    ) -> Result<Response<pb::BatchGetAccountsResponse>, Status> {
        respond(self.batch_get_accounts(request.into_inner()).await)
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        respond(self.list_contacts(request.into_inner()).await)
    }

    async fn erase_account(
        &self,
        request: Request<pb::EraseAccountRequest>,
    ) -> Result<Response<pb::EraseAccountResponse>, Status> {
        respond(self.erase_account(request.into_inner()).await)
    }

    async fn erase_contact(
        &self,
        request: Request<pb::EraseContactRequest>,
    ) -> Result<Response<pb::EraseContactResponse>, Status> {
        respond(self.erase_contact(request.into_inner()).await)
    }

    async fn get_subscription_history(
        &self,
        request: Request<pb::GetSubscriptionHistoryRequest>,
    ) -> Result<Response<pb::GetSubscriptionHistoryResponse>, Status> {
        respond(self.get_subscription_history(request.into_inner()).await)
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        respond(self.list_accounts(request.into_inner()).await)
    }

    async fn list_account_timeline(
        &self,
        request: Request<pb::ListAccountTimelineRequest>,
    ) -> Result<Response<pb::ListAccountTimelineResponse>, Status> {
        respond(self.list_account_timeline(request.into_inner()).await)
    }

    async fn get_account_signals(
        &self,
        request: Request<pb::GetAccountSignalsRequest>,
    ) -> Result<Response<pb::GetAccountSignalsResponse>, Status> {
        respond(self.get_account_signals(request.into_inner()).await)
    }

    async fn batch_upsert_success_plans(
        &self,
        request: Request<pb::BatchUpsertSuccessPlansRequest>,
    ) -> Result<Response<pb::BatchUpsertSuccessPlansResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertSuccessPlans",
                &r.request_id,
                &r,
                ("plans", &r.plans),
                convert::success_plan,
                |s| pb::BatchUpsertSuccessPlansResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_advocacy_activities(
        &self,
        request: Request<pb::BatchUpsertAdvocacyActivitiesRequest>,
    ) -> Result<Response<pb::BatchUpsertAdvocacyActivitiesResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertAdvocacyActivities",
                &r.request_id,
                &r,
                ("activities", &r.activities),
                convert::advocacy_activity,
                |s| pb::BatchUpsertAdvocacyActivitiesResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn get_advocacy_summaries(
        &self,
        request: Request<pb::GetAdvocacySummariesRequest>,
    ) -> Result<Response<pb::GetAdvocacySummariesResponse>, Status> {
        respond(self.get_advocacy_summaries(request.into_inner()).await)
    }

    async fn get_account_values(
        &self,
        request: Request<pb::GetAccountValuesRequest>,
    ) -> Result<Response<pb::GetAccountValuesResponse>, Status> {
        respond(self.get_account_values(request.into_inner()).await)
    }

    async fn get_success_plan_progress(
        &self,
        request: Request<pb::GetSuccessPlanProgressRequest>,
    ) -> Result<Response<pb::GetSuccessPlanProgressResponse>, Status> {
        respond(self.get_success_plan_progress(request.into_inner()).await)
    }

    async fn get_peer_benchmarks(
        &self,
        request: Request<pb::GetPeerBenchmarksRequest>,
    ) -> Result<Response<pb::GetPeerBenchmarksResponse>, Status> {
        respond(self.get_peer_benchmarks(request.into_inner()).await)
    }

    async fn stream_account_signals(
        &self,
        request: Request<pb::StreamAccountSignalsRequest>,
    ) -> Result<Response<Self::StreamAccountSignalsStream>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let wanted = if request.at.is_empty() {
            let as_of = as_of_date(request.as_of.as_ref(), &mut violations);
            violations.parse_each::<Id>("account_ids", &request.account_ids);
            crate::stream::Wanted::Accounts {
                account_ids: request.account_ids,
                as_of,
            }
        } else {
            if !request.account_ids.is_empty() {
                violations.add("account_ids", "must be empty when `at` is given");
            }
            if request.as_of.is_some() {
                violations.add(
                    "as_of",
                    "must be unset when `at` is given: each pair has its day",
                );
            }
            let mut pairs = Vec::with_capacity(request.at.len());
            for (i, pair) in request.at.into_iter().enumerate() {
                violations.parse::<Id, _>(&format!("at[{i}].account_id"), &pair.account_id);
                let field = format!("at[{i}].as_of");
                if let Some(day) = reads::past_day(pair.as_of.as_ref(), &field, &mut violations) {
                    pairs.push((pair.account_id, day));
                }
            }
            crate::stream::Wanted::At(pairs)
        };
        violations.into_result().map_err(Status::from)?;
        Ok(Response::new(crate::stream::signals(
            self.pool.clone(),
            wanted,
            request.skip_unknown,
        )))
    }
}
