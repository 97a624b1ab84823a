//! Scoring accounts: their signals from ingestion, the scorecard of their
//! segment, the explained result stored with its snapshot of the day.

use std::collections::HashMap;

use chrono::{NaiveDate, Utc};
use sqlx::PgPool;
use tenure_platform::client::TracedChannel;
use tenure_platform::wake::Wakeups;
use tenure_platform::{ApiError, ApiResult, time};
use tenure_proto::health::v1 as pb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{AccountSignals, StreamAccountSignalsRequest};
use tokio_util::sync::CancellationToken;

use crate::changes::{self, Change, DropRule};
use crate::notify::TOPIC_HEALTH_CHANGED;
use crate::scorecard::{self, Band, Scored};
use crate::signals::SignalStream;
use crate::store::{self, StoredScorecard};
use tenure_proto::playbooks::v1 as playbooks;

#[derive(Clone)]
pub struct Scorer {
    pool: PgPool,
    ingestion: IngestionServiceClient<TracedChannel>,
    drop_rule: DropRule,
    wakeups: Wakeups,
}

/// The wake-up channel of the rescore queue (migration `wake`).
pub const RESCORE_CHANNEL: &str = "rescore";

pub fn band_to_proto(band: Band) -> tenure_proto::common::v1::Band {
    match band {
        Band::Red => tenure_proto::common::v1::Band::Red,
        Band::Yellow => tenure_proto::common::v1::Band::Yellow,
        Band::Green => tenure_proto::common::v1::Band::Green,
    }
}

/// The explained result as the API shows it.
pub fn to_health(
    signals: &AccountSignals,
    card: &StoredScorecard,
    scored: &Scored,
) -> pb::AccountHealth {
    pb::AccountHealth {
        account_id: signals.account_id.clone(),
        score: scored.score,
        band: band_to_proto(scored.band) as i32,
        scorecard_name: card.name.clone(),
        scorecard_version: card.version,
        groups: scored
            .groups
            .iter()
            .map(|g| pb::GroupScore {
                name: g.name.clone(),
                score: g.score,
                contribution: g.contribution,
            })
            .collect(),
        measures: scored
            .measures
            .iter()
            .map(|m| pb::MeasureScore {
                group: m.group.clone(),
                name: m.name.clone(),
                signal: m.signal.clone(),
                raw_value: m.raw_value,
                score: m.score,
                weight: m.weight,
                effective_weight: m.effective_weight,
                contribution: m.contribution,
                missing: m.score.is_none(),
            })
            .collect(),
        as_of: signals.as_of,
        compute_time: Some(time::to_timestamp(Utc::now())),
        trend: None,
        rollup: None,
    }
}

/// What a scorecard reads for an account: its signals and the CSM's
/// assessment in force on the day scored (from `assessments`, by account).
pub(crate) fn scorecard_inputs(
    signals: &AccountSignals,
    assessments: &HashMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    let mut values = crate::signals::values(signals);
    if let Some(score) = assessments.get(&signals.account_id) {
        values.insert("csm_assessment".to_owned(), *score);
    }
    values
}

/// Accounts scored in one chunk of a recompute.
const CHUNK: usize = 500;

/// What a recompute produced: the scores, and the changes for playbooks.
#[derive(Default)]
struct Recomputed {
    healths: Vec<pb::AccountHealth>,
    events: Vec<playbooks::HealthChange>,
    maturity: crate::maturity::Tracking,
}

impl Scorer {
    pub fn new(
        pool: PgPool,
        ingestion: IngestionServiceClient<TracedChannel>,
        drop_rule: DropRule,
        wakeups: Wakeups,
    ) -> Self {
        Self {
            pool,
            ingestion,
            drop_rule,
            wakeups,
        }
    }

    /// Scores `account_ids` from their current signals and stores the results.
    pub async fn recompute(&self, account_ids: Vec<String>) -> ApiResult<Vec<pb::AccountHealth>> {
        let mut tx = self.pool.begin().await?;
        let healths = self.recompute_on(&mut tx, account_ids).await?;
        tx.commit().await?;
        Ok(healths)
    }

    /// [`Scorer::recompute`] inside the caller's transaction, on its
    /// connection alone: a scorer holding a connection never waits for a
    /// second one from the pool.
    async fn recompute_on(
        &self,
        tx: &mut sqlx::PgConnection,
        account_ids: Vec<String>,
    ) -> ApiResult<Vec<pb::AccountHealth>> {
        let request = StreamAccountSignalsRequest {
            account_ids,
            as_of: None,
            ..Default::default()
        };
        let mut stream = SignalStream::open(&self.ingestion, request).await?;
        let mut cards: HashMap<String, Option<StoredScorecard>> = HashMap::new();
        let mut scored = Recomputed::default();
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            let next = stream.next().await?;
            let done = next.is_none();
            chunk.extend(next);
            if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
                let batch = std::mem::take(&mut chunk);
                self.score_chunk(tx, batch, &mut cards, &mut scored).await?;
            }
            if done {
                break;
            }
        }
        scored.maturity.enqueue(tx).await?;
        if !scored.events.is_empty() {
            let notice = playbooks::NotifyHealthChangedRequest {
                request_id: String::new(),
                changes: scored.events,
            };
            tenure_platform::outbox::enqueue(tx, crate::SCHEMA, TOPIC_HEALTH_CHANGED, &notice)
                .await?;
        }
        Ok(scored.healths)
    }

    /// Scores a chunk of accounts: their assessments and previous scores
    /// read in one query each, the scores, snapshots and change log written
    /// in one statement each.
    async fn score_chunk(
        &self,
        tx: &mut sqlx::PgConnection,
        chunk: Vec<AccountSignals>,
        cards: &mut HashMap<String, Option<StoredScorecard>>,
        scored: &mut Recomputed,
    ) -> ApiResult<()> {
        let day_of = |signals: &AccountSignals| {
            signals
                .as_of
                .as_ref()
                .and_then(tenure_platform::time::from_date)
                .unwrap_or_else(|| Utc::now().date_naive())
        };
        let ids: Vec<String> = chunk.iter().map(|s| s.account_id.clone()).collect();
        let Some(as_of) = chunk.first().map(day_of) else {
            return Ok(());
        };
        let assessments = store::assessments(&mut *tx, &ids, as_of).await?;
        let befores = store::before_many(tx, &ids, as_of, self.drop_rule.window_days).await?;
        let inputs: Vec<_> = chunk
            .iter()
            .map(|s| (s.account_id.clone(), scorecard_inputs(s, &assessments)))
            .collect();
        scored.maturity.track(tx, &inputs, as_of).await?;
        let mut saves = Vec::with_capacity(chunk.len());
        for (signals, (_, values)) in chunk.into_iter().zip(&inputs) {
            let card = match cards.get(&signals.segment) {
                Some(card) => card.clone(),
                None => {
                    let card = store::scorecard_for_segment(&mut *tx, &signals.segment).await?;
                    cards.insert(signals.segment.clone(), card.clone());
                    card
                }
            };
            let Some(card) = card else {
                return Err(ApiError::FailedPrecondition(
                    "no scorecard: create a default one first".into(),
                ));
            };
            let Some(result) = scorecard::score(&card.definition.0, values) else {
                tracing::warn!(account_id = %signals.account_id, "no measure of the scorecard has data; not scored");
                continue;
            };
            let health = to_health(&signals, &card, &result);
            let before = befores.get(&signals.account_id).copied();
            let band = band_to_proto(result.band);
            for change in changes::detect(before, result.score, band, self.drop_rule) {
                let (kind, previous_score, previous_band) = match change {
                    Change::BandChanged { from, .. } => (
                        playbooks::HealthChangeKind::BandChanged,
                        before.map_or(0.0, |b| b.score),
                        from,
                    ),
                    Change::ScoreDropped { peak, .. } => (
                        playbooks::HealthChangeKind::ScoreDropped,
                        peak,
                        before.map_or(band, |b| b.band),
                    ),
                };
                scored.events.push(playbooks::HealthChange {
                    account_id: health.account_id.clone(),
                    kind: kind as i32,
                    previous_score,
                    score: result.score,
                    previous_band: previous_band.word().unwrap_or_default().to_owned(),
                    band: band.word().unwrap_or_default().to_owned(),
                    occurred_at: health.compute_time,
                    from_band: previous_band as i32,
                    to_band: band as i32,
                });
            }
            let (currency, arr_minor) = signals.arr.as_ref().map_or((String::new(), 0), |m| {
                (m.currency_code.clone(), m.amount_minor)
            });
            let facts = store::AccountFacts {
                segment: signals.segment.clone(),
                owner: signals.owner.clone(),
                parent_account_id: signals.parent_account_id.clone(),
                currency,
                arr_minor,
            };
            saves.push((health, day_of(&signals), facts, before));
        }
        let stored: Vec<_> = saves
            .iter()
            .map(|(health, day, facts, _)| (health.clone(), *day, facts.clone()))
            .collect();
        store::save_scores(tx, &stored).await?;
        let logged: Vec<_> = saves
            .iter()
            .map(|(health, _, facts, before)| (health, *before, facts))
            .collect();
        crate::watch::record_many(tx, &logged).await?;
        scored
            .healths
            .extend(saves.into_iter().map(|(health, _, _, _)| health));
        Ok(())
    }

    /// Scores every account, a batch of ids at a time; returns how many.
    pub async fn recompute_all(
        &self,
        ids_source: &mut IngestionServiceClient<TracedChannel>,
    ) -> ApiResult<usize> {
        use tenure_proto::ingestion::v1::ListAccountsRequest;
        let mut page_token = String::new();
        let mut scored = 0;
        loop {
            let page = ids_source
                .list_accounts(ListAccountsRequest {
                    page_size: 1000,
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(|s| ApiError::from_upstream(s, "accounts"))?
                .into_inner();
            let ids: Vec<String> = page.accounts.into_iter().map(|a| a.account_id).collect();
            if !ids.is_empty() {
                scored += self.recompute(ids).await?.len();
            }
            if page.next_page_token.is_empty() {
                return Ok(scored);
            }
            page_token = page.next_page_token;
        }
    }

    /// Scores a batch of the accounts ingestion reported as changed; they
    /// leave the queue only if scoring them commits.
    pub async fn drain_once(&self, batch: i64) -> anyhow::Result<usize> {
        if !store::any_scorecard(&self.pool).await? {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let marked: Vec<(String, Option<chrono::DateTime<Utc>>, serde_json::Value)> =
            sqlx::query_as(
                "DELETE FROM health.rescore_queue WHERE account_id IN ( \
                   SELECT account_id FROM health.rescore_queue ORDER BY last_marked_at \
                   LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 RETURNING account_id, earliest_event_time, trace_context",
            )
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
        if marked.is_empty() {
            return Ok(0);
        }
        // Rescoring continues the trace of the notice that marked the first
        // account, linked to the traces of the others.
        let span = tracing::info_span!("health.rescore", accounts = marked.len());
        tenure_platform::trace::continue_traces(&span, marked.iter().map(|(_, _, c)| c));
        let rows: Vec<(String, Option<chrono::DateTime<Utc>>)> =
            marked.into_iter().map(|(id, at, _)| (id, at)).collect();
        tracing::Instrument::instrument(self.rescore_marked(tx, rows), span).await
    }

    async fn rescore_marked(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        rows: Vec<(String, Option<chrono::DateTime<Utc>>)>,
    ) -> anyhow::Result<usize> {
        let today = Utc::now().date_naive();
        let late: Vec<(String, NaiveDate)> = rows
            .iter()
            .filter_map(|(id, earliest)| Some((id.clone(), earliest.as_ref()?.date_naive())))
            .filter(|(_, day)| *day < today)
            .collect();
        self.recompute_history(&mut tx, &late)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ids: Vec<String> = rows.into_iter().map(|(id, _)| id).collect();
        // Queued again: whatever set them aside before is judged afresh.
        sqlx::query("DELETE FROM health.rescore_set_aside WHERE account_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
        let scored = match self.recompute_on(&mut attempt, ids.clone()).await {
            Ok(scored) => {
                attempt.commit().await?;
                scored.len()
            }
            // One account that cannot be scored must not hold up the rest:
            // score them one by one and set aside those that fail so.
            Err(ApiError::NotFound(_)) => {
                attempt.rollback().await?;
                self.recompute_each(&mut tx, &ids).await?
            }
            Err(error) => return Err(anyhow::anyhow!("{error}")),
        };
        tx.commit().await?;
        Ok(scored)
    }

    /// Scores accounts one at a time, setting aside (with the reason) each
    /// one ingestion does not know; returns how many were scored.
    async fn recompute_each(
        &self,
        tx: &mut sqlx::PgConnection,
        ids: &[String],
    ) -> anyhow::Result<usize> {
        let mut scored = 0;
        let mut set_aside = Vec::new();
        for id in ids {
            let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
            match self.recompute_on(&mut attempt, vec![id.clone()]).await {
                Ok(healths) => {
                    attempt.commit().await?;
                    scored += healths.len();
                }
                Err(ApiError::NotFound(what)) => {
                    attempt.rollback().await?;
                    set_aside.push((id.clone(), format!("{what} not found")));
                }
                Err(error) => return Err(anyhow::anyhow!("{error}")),
            }
        }
        for (account_id, reason) in &set_aside {
            tracing::warn!(%account_id, %reason, "account set aside from rescoring");
        }
        let (accounts, reasons): (Vec<String>, Vec<String>) = set_aside.into_iter().unzip();
        sqlx::query(
            "INSERT INTO health.rescore_set_aside (account_id, reason) \
             SELECT * FROM UNNEST($1::text[], $2::text[]) \
             ON CONFLICT (account_id) DO UPDATE SET reason = EXCLUDED.reason, set_aside_at = now()",
        )
        .bind(&accounts)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
        Ok(scored)
    }

    /// Late data: for accounts whose changes happened on a past day, the
    /// snapshots from that day on are recomputed from the signals as of
    /// each day, so history follows event time, not arrival time. Runs in
    /// the caller's transaction, on its connection alone.
    pub async fn recompute_history(
        &self,
        tx: &mut sqlx::PgConnection,
        late: &[(String, NaiveDate)],
    ) -> ApiResult<usize> {
        const MAX_DAYS_BACK: i64 = 400;
        let mut by_day: std::collections::BTreeMap<NaiveDate, Vec<String>> =
            std::collections::BTreeMap::new();
        for (account_id, earliest) in late {
            let floor = Utc::now().date_naive() - chrono::Days::new(MAX_DAYS_BACK as u64);
            let days: Vec<NaiveDate> = sqlx::query_scalar(
                "SELECT day FROM health.score_history WHERE account_id = $1 AND day >= $2 AND day < current_date",
            )
            .bind(account_id)
            .bind((*earliest).max(floor))
            .fetch_all(&mut *tx)
            .await?;
            for day in days {
                by_day.entry(day).or_default().push(account_id.clone());
            }
        }
        let mut recomputed = 0;
        for (day, account_ids) in by_day {
            let assessments = store::assessments(&mut *tx, &account_ids, day).await?;
            let request = StreamAccountSignalsRequest {
                account_ids,
                as_of: Some(time::to_date(day)),
                ..Default::default()
            };
            let mut stream = SignalStream::open(&self.ingestion, request).await?;
            while let Some(signals) = stream.next().await? {
                let Some(card) = store::scorecard_for_segment(&mut *tx, &signals.segment).await?
                else {
                    continue;
                };
                // The same inputs as a current score: history rescored
                // without the CSM's assessment would make every trend
                // compare against a different scorecard.
                let values = scorecard_inputs(&signals, &assessments);
                let Some(scored) = scorecard::score(&card.definition.0, &values) else {
                    continue;
                };
                store::save_snapshot(
                    tx,
                    &signals.account_id,
                    day,
                    scored.score,
                    scored.band as i16,
                    &card,
                )
                .await?;
                recomputed += 1;
            }
        }
        Ok(recomputed)
    }

    /// Keeps the scores of changed accounts current until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let wake = self.wakeups.channel(RESCORE_CHANNEL);
        tenure_platform::service::poll(
            &cancel,
            self.wakeups.fallback,
            Some(&wake),
            "rescoring changed accounts",
            || async { self.drain_once(200).await.map(|n| (n > 0).into()) },
        )
        .await;
    }
}
