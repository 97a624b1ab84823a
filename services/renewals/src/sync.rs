//! Keeps the pipeline current: drains the subscriptions ingestion reported
//! as changed (their history from ingestion, then their accounts' health
//! from health), follows health's changes, and once a day runs the
//! renewal-approaching sweep.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tenure_platform::client::TracedChannel;
use tenure_platform::wake::Wakeups;
use tenure_proto::health::v1 as hpb;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::GetSubscriptionHistoryRequest;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::Instrument as _;

use crate::{contracts, forecasts, pipeline, sweep};

/// Accounts whose health one read (and one prediction) copies.
const HEALTH_BATCH: usize = 1000;

/// How long health's changes that arrive together are gathered into one
/// refresh.
const FOLLOW_GATHER: Duration = Duration::from_millis(200);

/// How long finished forecast jobs and their rows are kept.
const JOB_RETENTION: chrono::Duration = chrono::Duration::days(7);

#[derive(Clone)]
pub struct Syncer {
    pool: PgPool,
    ingestion: IngestionServiceClient<TracedChannel>,
    health: HealthServiceClient<TracedChannel>,
    thresholds: Vec<u32>,
    wakeups: Wakeups,
}

/// The wake-up channel of the subscription queue (migration `wake`).
pub const SUBSCRIPTIONS_CHANNEL: &str = "subscriptions";

impl Syncer {
    pub fn new(
        pool: PgPool,
        ingestion: IngestionServiceClient<TracedChannel>,
        health: HealthServiceClient<TracedChannel>,
        thresholds: Vec<u32>,
        wakeups: Wakeups,
    ) -> Self {
        Self {
            pool,
            ingestion,
            health,
            thresholds,
            wakeups,
        }
    }

    /// Refreshes a batch of changed subscriptions; they leave the queue
    /// only if their refresh commits.
    pub async fn drain_once(&self, batch: i64) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let marked: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "DELETE FROM renewals.subscription_queue WHERE subscription_id IN ( \
               SELECT subscription_id FROM renewals.subscription_queue ORDER BY last_marked_at \
               LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING subscription_id, trace_context",
        )
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if marked.is_empty() {
            return Ok(0);
        }
        // The refresh continues the trace of the change that marked the
        // first subscription, linked to the traces of the others.
        let span = tracing::info_span!("renewals.sync", subscriptions = marked.len());
        tenure_platform::trace::continue_traces(&span, marked.iter().map(|(_, c)| c));
        let ids: Vec<String> = marked.into_iter().map(|(id, _)| id).collect();
        self.refresh(tx, ids).instrument(span).await
    }

    async fn refresh(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        ids: Vec<String>,
    ) -> anyhow::Result<usize> {
        let history = self
            .ingestion
            .clone()
            .get_subscription_history(GetSubscriptionHistoryRequest {
                subscription_ids: ids.clone(),
            })
            .await?
            .into_inner();
        crate::history::apply(&mut tx, &history).await?;
        tx.commit().await?;
        let accounts: Vec<String> = history
            .accounts
            .iter()
            .map(|a| a.account_id.clone())
            .collect();
        self.sync_health(&accounts).await?;
        Ok(ids.len())
    }

    /// Copies the health score, band and churn probability of `accounts`,
    /// a thousand at a time (one read of health and one prediction per
    /// batch). Accounts health has not scored, or no churn model yet, keep
    /// what they had.
    pub async fn sync_health(&self, accounts: &[String]) -> anyhow::Result<()> {
        let mut model = true;
        for batch in accounts.chunks(HEALTH_BATCH) {
            let scores = self
                .health
                .clone()
                .batch_get_health(hpb::BatchGetHealthRequest {
                    account_ids: batch.to_vec(),
                })
                .await?
                .into_inner()
                .scores;
            let churn = if model {
                match self
                    .health
                    .clone()
                    .batch_predict_churn(hpb::BatchPredictChurnRequest {
                        account_ids: batch.to_vec(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(response) => Some(response.into_inner()),
                    // No model trained yet.
                    Err(status) if status.code() == Code::FailedPrecondition => {
                        model = false;
                        None
                    }
                    Err(status) => return Err(status.into()),
                }
            } else {
                None
            };
            let health: Vec<pipeline::AccountHealth> = scores.into_iter().map(health_of).collect();
            let predictions = churn.map(predictions_of).unwrap_or_default();
            pipeline::set_health(&self.pool, &health, &predictions).await?;
            if !predictions.is_empty() {
                let today = chrono::Utc::now().date_naive();
                let predicted: Vec<String> =
                    predictions.into_iter().map(|p| p.account_id).collect();
                contracts::record_horizon_probabilities(&self.pool, today, Some(&predicted))
                    .await?;
            }
        }
        Ok(())
    }

    /// Health of every account with an open renewal, once a day: scores move
    /// without subscriptions changing.
    async fn refresh_open_accounts(&self) -> anyhow::Result<()> {
        let accounts: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT account_id FROM renewals.opportunities \
             WHERE state = 1 AND term_end >= current_date - 30",
        )
        .fetch_all(&self.pool)
        .await?;
        self.sync_health(&accounts).await
    }

    /// Refreshes changed subscriptions as they come, and sweeps for
    /// approaching renewals once a day, until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let sweeper = tokio::spawn(self.clone().sweep_daily(cancel.clone()));
        let maintenance = tokio::spawn(self.clone().maintain(cancel.clone()));
        let follower = tokio::spawn(self.clone().follow_health(cancel.clone()));
        let wake = self.wakeups.channel(SUBSCRIPTIONS_CHANNEL);
        tenure_platform::service::poll(
            &cancel,
            self.wakeups.fallback,
            Some(&wake),
            "refreshing subscriptions",
            || async { self.drain_once(200).await.map(|n| (n > 0).into()) },
        )
        .await;
        let _ = sweeper.await;
        let _ = maintenance.await;
        let _ = follower.await;
    }

    /// Follows health's change log so the pipeline shows each account's
    /// latest score within moments of its change: the accounts of the
    /// changes that arrive together (up to a thousand) are refreshed as one
    /// batch, then the cursor of the last one is kept, so a restart resumes
    /// after it. A broken stream is opened again after a backoff.
    async fn follow_health(self, cancel: CancellationToken) {
        let mut failures = 0;
        loop {
            let followed = tokio::select! {
                () = cancel.cancelled() => return,
                followed = self.follow_changes() => followed,
            };
            if let Err(error) = followed {
                failures += 1;
                tracing::warn!(error = %format!("{error:#}"), "following health's changes failed");
            } else {
                failures = 0;
            }
            let delay = tenure_platform::backoff::delay_after(
                Duration::from_millis(200),
                Duration::from_secs(30),
                failures,
            );
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One watch of health's changes, until the stream ends or fails.
    async fn follow_changes(&self) -> anyhow::Result<()> {
        use tokio_stream::StreamExt as _;
        let cursor: Option<String> =
            sqlx::query_scalar("SELECT cursor FROM renewals.health_cursor")
                .fetch_optional(&self.pool)
                .await?;
        let mut changes = self
            .health
            .clone()
            .watch_health_changes(hpb::WatchHealthChangesRequest {
                cursor: cursor.unwrap_or_default(),
                ..Default::default()
            })
            .await?
            .into_inner();
        while let Some(first) = changes.next().await {
            let first = first?;
            let mut cursor = first.cursor;
            let mut accounts = vec![first.account_id];
            // What else arrives within a moment joins the batch.
            let gathered = tokio::time::Instant::now() + FOLLOW_GATHER;
            while accounts.len() < HEALTH_BATCH {
                match tokio::time::timeout_at(gathered, changes.next()).await {
                    Ok(Some(change)) => {
                        let change = change?;
                        cursor = change.cursor;
                        accounts.push(change.account_id);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            accounts.sort();
            accounts.dedup();
            self.sync_health(&accounts).await?;
            sqlx::query(
                "INSERT INTO renewals.health_cursor (cursor) VALUES ($1) \
                 ON CONFLICT (one) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
            )
            .bind(&cursor)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// The renewal-approaching sweep, once each day (looked for every
    /// minute, so a failed sweep is tried again a minute later).
    async fn sweep_daily(self, cancel: CancellationToken) {
        let mut swept_on = None;
        loop {
            let today = Utc::now().date_naive();
            if swept_on != Some(today) {
                match sweep::run(&self.pool, today, &self.thresholds).await {
                    Ok(emitted) => {
                        tracing::info!(emitted, "renewal sweep done");
                        swept_on = Some(today);
                    }
                    Err(error) => tracing::warn!(%error, "renewal sweep failed"),
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
    }

    /// Once a day, beside the refreshes: expire old forecast jobs and copy
    /// the health of every account with an open renewal.
    async fn maintain(self, cancel: CancellationToken) {
        loop {
            let work = async {
                if let Err(error) = forecasts::expire_jobs(&self.pool, JOB_RETENTION).await {
                    tracing::warn!(%error, "expiring forecast jobs failed");
                }
                if let Err(error) = self.refresh_open_accounts().await {
                    tracing::warn!(error = %format!("{error:#}"), "refreshing health failed");
                }
            };
            // A stop does not wait for a day's refresh to finish.
            tokio::select! {
                () = cancel.cancelled() => return,
                () = work => {}
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
            }
        }
    }
}

/// An account's health as renewals keeps it.
fn health_of(score: hpb::AccountHealthSummary) -> pipeline::AccountHealth {
    pipeline::AccountHealth {
        band: score.band().word().unwrap_or_default().to_owned(),
        account_id: score.account_id,
        score: score.score,
    }
}

/// Each account's churn probability by the model that answered.
fn predictions_of(answer: hpb::BatchPredictChurnResponse) -> Vec<pipeline::AccountChurn> {
    answer
        .predictions
        .into_iter()
        .map(|p| pipeline::AccountChurn {
            account_id: p.account_id,
            probability: p.churn_probability,
            model_id: answer.model_id.clone(),
        })
        .collect()
}
