//! Churn models: trained on past renewal outcomes, each with the account's
//! signals from ingestion as they were `horizon_days` before its term end
//! (ingestion answers as of that day, so nothing from after it can leak
//! into training); their predictions, and scorecard backtests on the same
//! examples.

use chrono::{Days, NaiveDate, Utc};
use tenure_platform::{ApiResult, time};
use tenure_proto::health::v1 as pb;
use tenure_proto::ingestion::v1::StreamAccountSignalsRequest;
use uuid::Uuid;

use super::pasts::{PastOutcome, Pasts};
use super::{MIN_EXAMPLES, ModelKind, Trainer, signal_weights};
use crate::model::{self, Example, FitOptions, Model};
use crate::signals;

/// Records a RUNNING churn model in the caller's transaction and trains
/// it in the background, on every outcome or on those decided by
/// `as_of`, once that transaction has committed the model (never, if it
/// rolls back).
pub async fn start(
    trainer: &Trainer,
    tx: &mut sqlx::PgConnection,
    horizon_days: i32,
    l2: f64,
    as_of: Option<NaiveDate>,
) -> ApiResult<pb::ChurnModel> {
    let (model_id, created) = trainer
        .start_job(tx, ModelKind::Churn, horizon_days, l2, as_of)
        .await?;
    Ok(pb::ChurnModel {
        model_id: model_id.to_string(),
        status: pb::ModelStatus::Running as i32,
        horizon_days,
        l2,
        create_time: Some(time::to_timestamp(created)),
        as_of: as_of.map(time::to_date),
        ..Default::default()
    })
}

/// Past outcomes with the account's signals at the horizon: (account,
/// term end, example). Only outcomes whose horizon day has come by
/// `today` (and by `as_of`, when given) count; an account the horizon day
/// did not know is left out.
async fn examples(
    pasts: &dyn Pasts,
    horizon_days: i32,
    as_of: Option<NaiveDate>,
    today: NaiveDate,
) -> anyhow::Result<Vec<(String, NaiveDate, Example)>> {
    let mut examples = Vec::new();
    let mut page_token = String::new();
    let known_on = as_of.map_or(today, |d| d.min(today));
    loop {
        let (outcomes, next_page_token) = pasts.outcomes(as_of, page_token).await?;
        let wanted: Vec<(PastOutcome, NaiveDate)> = outcomes
            .into_iter()
            .filter_map(|outcome| {
                let day = outcome
                    .term_end
                    .checked_sub_days(Days::new(u64::from(horizon_days.unsigned_abs())))
                    .filter(|d| *d <= known_on)?;
                Some((outcome, day))
            })
            .collect();
        let mut fetched = pasts
            .signals_at(
                wanted
                    .iter()
                    .map(|(o, day)| (o.account_id.clone(), *day))
                    .collect(),
            )
            .await?;
        for (outcome, day) in wanted {
            let Some(signals) = fetched.remove(&(outcome.account_id.clone(), day)) else {
                continue;
            };
            let example = Example {
                numbers: signals::values(&signals),
                categories: signals::categories(&signals),
                churned: outcome.churned,
                group: outcome.account_id.clone(),
            };
            examples.push((outcome.account_id, outcome.term_end, example));
        }
        if next_page_token.is_empty() {
            return Ok(examples);
        }
        page_token = next_page_token;
    }
}

pub(super) async fn train(
    trainer: &Trainer,
    model_id: Uuid,
    horizon_days: i32,
    l2: f64,
    as_of: Option<NaiveDate>,
) -> anyhow::Result<(Model, pb::ChurnModel)> {
    let started = std::time::Instant::now();
    let today = Utc::now().date_naive();
    let gathered = examples(trainer.pasts.as_ref(), horizon_days, as_of, today).await?;
    let gather_seconds = started.elapsed().as_secs_f64();
    let first = gathered.iter().map(|(_, d, _)| *d).min();
    let last = gathered.iter().map(|(_, d, _)| *d).max();
    let window = first
        .zip(last)
        .map(|(first, last)| tenure_proto::common::v1::DateRange {
            start: Some(time::to_date(first)),
            end: last.succ_opt().map(time::to_date),
        });
    let examples: Vec<Example> = gathered.into_iter().map(|(_, _, e)| e).collect();
    let churns = examples.iter().filter(|e| e.churned).count();
    anyhow::ensure!(
        examples.len() >= MIN_EXAMPLES && churns > 0 && churns < examples.len(),
        "training needs at least {MIN_EXAMPLES} outcomes with both renewals and churns; found {} with {churns} churns",
        examples.len()
    );
    let options = FitOptions {
        l2,
        ..FitOptions::default()
    };
    let fitting = examples.clone();
    let started = std::time::Instant::now();
    let ((model, convergence), predictions) = tokio::task::spawn_blocking(move || {
        (
            Model::fit_reporting(&fitting, options),
            model::cross_validate(&fitting, 5, options),
        )
    })
    .await?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let churned: Vec<bool> = examples.iter().map(|e| e.churned).collect();
    let weights = signal_weights(&model, &examples);
    let maturity = maturity_lessons(trainer, &examples).await?;
    let report = pb::ChurnModel {
        model_id: model_id.to_string(),
        status: pb::ModelStatus::Ready as i32,
        horizon_days,
        l2,
        example_count: examples.len() as i32,
        churn_count: churns as i32,
        cv_auc: model::auc(&predictions, &churned),
        cv_brier: Some(model::brier(&predictions, &churned)),
        signals: weights,
        training_window: window,
        converged: convergence.converged,
        iterations: i32::try_from(convergence.iterations).unwrap_or(i32::MAX),
        tolerance: options.tolerance,
        as_of: as_of.map(time::to_date),
        gather_seconds,
        fit_seconds,
        maturity,
        ..Default::default()
    };
    Ok((model, report))
}

/// What the examples say of the latest version of each maturity model:
/// renewals per level and per behaviour at the horizon.
async fn maturity_lessons(
    trainer: &Trainer,
    examples: &[Example],
) -> anyhow::Result<Vec<pb::MaturityLessons>> {
    let models = crate::maturity::store::list_latest(&trainer.pool, None, None).await?;
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(models
        .into_iter()
        .map(|stored| {
            let definition = &stored.definition.0;
            let lessons = definition.lessons(examples.iter().map(|e| (&e.numbers, !e.churned)));
            pb::MaturityLessons {
                levels: lessons
                    .levels
                    .iter()
                    .map(|&(level, n, renewed)| pb::LevelOutcomes {
                        level: level.into(),
                        name: definition.level_name(level).to_owned(),
                        example_count: count(n),
                        renewed_count: count(renewed),
                        renewal_rate_pct: model::renewal_rate_pct(n, renewed),
                    })
                    .collect(),
                behaviours: lessons
                    .behaviours
                    .into_iter()
                    .map(|b| pb::BehaviourOutcomes {
                        behaviour: b.name,
                        level: b.level.into(),
                        shown_count: count(b.shown.0),
                        renewal_rate_shown_pct: model::renewal_rate_pct(b.shown.0, b.shown.1),
                        not_shown_count: count(b.not_shown.0),
                        renewal_rate_not_shown_pct: model::renewal_rate_pct(
                            b.not_shown.0,
                            b.not_shown.1,
                        ),
                    })
                    .collect(),
                model_name: stored.name,
                version: stored.version,
            }
        })
        .collect())
}

/// A churn model by id, or the latest ready one.
pub async fn get(trainer: &Trainer, model_id: Option<Uuid>) -> ApiResult<pb::ChurnModel> {
    let stored = trainer.stored(ModelKind::Churn, model_id).await?;
    let mut model: pb::ChurnModel = stored.report()?;
    model.model_id = stored.model_id.to_string();
    model.status = i32::from(stored.status);
    model.horizon_days = stored.horizon_days;
    model.l2 = stored.l2;
    model.error = stored.error;
    model.create_time = Some(time::to_timestamp(stored.create_time));
    model.finish_time = stored.finish_time.map(time::to_timestamp);
    model.as_of = stored.as_of.map(time::to_date);
    Ok(model)
}

/// Accounts' churn probabilities from their signals as of `as_of` (now
/// when unset), read in one stream, by one model or the latest ready one;
/// the accounts ingestion does not know are named apart.
pub async fn predict(
    trainer: &Trainer,
    account_ids: &[String],
    as_of: Option<NaiveDate>,
    model_id: Option<Uuid>,
) -> ApiResult<pb::BatchPredictChurnResponse> {
    let (model_id, model): (Uuid, Model) = trainer.ready(ModelKind::Churn, model_id).await?;
    let request = StreamAccountSignalsRequest {
        account_ids: account_ids.to_vec(),
        as_of: as_of.map(time::to_date),
        skip_unknown: true,
        ..Default::default()
    };
    let mut stream = signals::SignalStream::open(&trainer.ingestion, request).await?;
    let mut predictions = Vec::with_capacity(account_ids.len());
    while let Some(signals) = stream.next().await? {
        let (probability, contributions) =
            model.predict(&signals::values(&signals), &signals::categories(&signals));
        let mut top: Vec<(String, f64)> = contributions
            .into_iter()
            .filter(|(_, c)| *c != 0.0)
            .collect();
        top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        top.truncate(5);
        predictions.push(pb::ChurnPrediction {
            account_id: signals.account_id,
            churn_probability: probability,
            top_signals: top
                .into_iter()
                .map(|(feature, contribution)| pb::SignalContribution {
                    feature,
                    contribution,
                })
                .collect(),
        });
    }
    let missing_account_ids = tenure_platform::batch::missing(
        account_ids,
        predictions.iter().map(|p| p.account_id.as_str()),
    );
    Ok(pb::BatchPredictChurnResponse {
        model_id: model_id.to_string(),
        predictions,
        missing_account_ids,
    })
}

/// Scores past accounts at the horizon with one scorecard version.
pub async fn backtest(
    trainer: &Trainer,
    card: &crate::store::StoredScorecard,
    horizon_days: i32,
) -> ApiResult<pb::BacktestScorecardResponse> {
    let today = Utc::now().date_naive();
    let examples = examples(trainer.pasts.as_ref(), horizon_days, None, today)
        .await
        .map_err(|e| anyhow::anyhow!("gathering outcomes: {e:#}"))?;
    let mut scores = Vec::new();
    let mut renewed = Vec::new();
    let mut bands: std::collections::BTreeMap<i32, (i32, i32)> = std::collections::BTreeMap::new();
    let mut surprises = Vec::new();
    for (account_id, term_end, example) in &examples {
        let Some(scored) = crate::scorecard::score(&card.definition.0, &example.numbers) else {
            continue;
        };
        let band = crate::scoring::band_to_proto(scored.band);
        let entry = bands.entry(band as i32).or_default();
        entry.0 += 1;
        if !example.churned {
            entry.1 += 1;
        }
        if example.churned && band == tenure_proto::common::v1::Band::Green {
            surprises.push(pb::SurpriseChurn {
                account_id: account_id.clone(),
                score: scored.score,
                term_end_date: Some(time::to_date(*term_end)),
            });
        }
        scores.push(scored.score);
        renewed.push(!example.churned);
    }
    Ok(pb::BacktestScorecardResponse {
        name: card.name.clone(),
        version: card.version,
        horizon_days,
        example_count: scores.len() as i32,
        auc: model::auc(&scores, &renewed),
        bands: [
            tenure_proto::common::v1::Band::Red,
            tenure_proto::common::v1::Band::Yellow,
            tenure_proto::common::v1::Band::Green,
        ]
        .into_iter()
        .map(|band| {
            let (count, renewed) = bands.get(&(band as i32)).copied().unwrap_or_default();
            pb::BandOutcomes {
                band: band as i32,
                account_count: count,
                renewed_count: renewed,
                renewal_rate_pct: model::renewal_rate_pct(
                    u32::try_from(count).unwrap_or(0),
                    u32::try_from(renewed).unwrap_or(0),
                ),
            }
        })
        .collect(),
        surprise_churns: surprises,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::pasts::remembered::{Remembered, day, signals};

    fn outcome(account: &str, term_end: &str, churned: bool) -> PastOutcome {
        PastOutcome {
            account_id: account.to_owned(),
            term_end: day(term_end),
            churned,
        }
    }

    /// Each outcome is read with its account's signals on the horizon day
    /// (term end − horizon), across pages; a horizon day still to come is
    /// not asked for, and an account that day did not know is left out.
    #[tokio::test]
    async fn examples_read_each_account_at_its_horizon_day() {
        let pasts = Remembered {
            outcomes: vec![
                outcome("a", "2026-03-01", true),
                outcome("b", "2026-09-15", false),
                outcome("c", "2026-12-01", false),
                outcome("d", "2026-02-01", true),
                outcome("e", "2025-07-01", false),
            ],
            ..Default::default()
        }
        .knows(signals("a", "2025-12-01", 3))
        .knows(signals("b", "2026-06-17", 40))
        .knows(signals("e", "2025-04-02", 12));
        let today = day("2026-06-30");
        let found = examples(&pasts, 90, None, today).await.unwrap();
        let read: Vec<(&str, NaiveDate, bool, f64)> = found
            .iter()
            .map(|(account, end, e)| {
                (
                    account.as_str(),
                    *end,
                    e.churned,
                    e.numbers["active_users_30d"],
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("a", day("2026-03-01"), true, 3.0),
                ("b", day("2026-09-15"), false, 40.0),
                ("e", day("2025-07-01"), false, 12.0),
            ]
        );
        assert_eq!(
            pasts.asked(),
            [
                ("a".to_owned(), day("2025-12-01")),
                ("b".to_owned(), day("2026-06-17")),
                ("d".to_owned(), day("2025-11-03")),
                ("e".to_owned(), day("2025-04-02")),
            ],
            "c's horizon day (2026-09-02) has not come"
        );
    }

    /// Trained as of a past day, only outcomes decided by then count, and
    /// no horizon day after it is asked for.
    #[tokio::test]
    async fn examples_as_of_a_past_day_see_nothing_after_it() {
        let pasts = Remembered {
            outcomes: vec![
                outcome("a", "2026-03-01", true),
                outcome("f", "2026-01-10", true),
            ],
            ..Default::default()
        }
        .knows(signals("f", "2025-10-12", 5));
        let found = examples(&pasts, 90, Some(day("2026-01-15")), day("2026-06-30"))
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "f");
        assert_eq!(pasts.asked(), [("f".to_owned(), day("2025-10-12"))]);
    }
}
