//! Prospect fit's training job: every past customer's first term from
//! renewals, its signals from ingestion on its first paid day and at the
//! look day, and the fit learned from them ([`crate::prospect::fit`]).

use chrono::{Days, NaiveDate};
use tenure_platform::time;
use tenure_proto::health::v1 as pb;
use tenure_proto::renewals::v1::FirstTerm;
use uuid::Uuid;

use super::pasts::Pasts;
use super::{MIN_EXAMPLES, Trainer, signal_weights};
use crate::model::FitOptions;
use crate::prospect::fit::{self, PastCustomer, ProspectFit};
use crate::prospect::{firmographics, indicators};

/// Every past customer whose first term is decided (by `as_of`), with its
/// firmographics and, when it still paid at the look day, its indicators.
async fn past_customers(
    pasts: &dyn Pasts,
    look_days: i32,
    as_of: Option<NaiveDate>,
) -> anyhow::Result<(Vec<PastCustomer>, Vec<NaiveDate>)> {
    let terms: Vec<(FirstTerm, NaiveDate)> = pasts
        .first_terms(as_of, look_days)
        .await?
        .into_iter()
        .filter_map(|term| {
            let first = term.first_paid_on.as_ref().and_then(time::from_date)?;
            Some((term, first))
        })
        .collect();
    let look =
        |first: NaiveDate| first.checked_add_days(Days::new(look_days.unsigned_abs().into()));
    let mut pairs = Vec::with_capacity(terms.len() * 2);
    for (term, first) in &terms {
        pairs.push((term.account_id.clone(), *first));
        if let Some(day) = look(*first).filter(|_| term.paying_at_look) {
            pairs.push((term.account_id.clone(), day));
        }
    }
    let mut fetched = pasts.signals_at(pairs).await?;
    let mut customers = Vec::with_capacity(terms.len());
    let mut firsts = Vec::with_capacity(terms.len());
    for (term, first) in terms {
        // Missing: the account is not known to ingestion (erased).
        let Some(at_signing) = fetched.remove(&(term.account_id.clone(), first)) else {
            continue;
        };
        let at_look = look(first)
            .filter(|_| term.paying_at_look)
            .and_then(|day| fetched.remove(&(term.account_id.clone(), day)));
        customers.push(PastCustomer {
            firmographics: firmographics(&at_signing, &term),
            indicators: at_look.as_ref().map(indicators),
            renewed: term.renewed,
            account_id: term.account_id,
        });
        firsts.push(first);
    }
    Ok((customers, firsts))
}

/// Learns prospect fit and its report.
pub async fn train(
    trainer: &Trainer,
    model_id: Uuid,
    look_days: i32,
    l2: f64,
    as_of: Option<NaiveDate>,
) -> anyhow::Result<(ProspectFit, pb::ProspectModel)> {
    let started = std::time::Instant::now();
    let (customers, firsts) = past_customers(trainer.pasts.as_ref(), look_days, as_of).await?;
    let gather_seconds = started.elapsed().as_secs_f64();
    let options = FitOptions {
        l2,
        ..FitOptions::default()
    };
    let started = std::time::Instant::now();
    let (fit, fit_cv, indicator_cv) =
        tokio::task::spawn_blocking(move || ProspectFit::learn(&customers, options, MIN_EXAMPLES))
            .await??;
    let fit_seconds = started.elapsed().as_secs_f64();
    let churned = |v: &fit::Validation| v.examples.iter().map(|e| e.churned).collect::<Vec<_>>();
    let fit_churned = churned(&fit_cv);
    let indicator_churned = churned(&indicator_cv);
    // The indicator model's own weights: the firmographics it also reads
    // are reported with the fit model.
    let firmographic: std::collections::BTreeSet<String> =
        fit.fit.encoding.feature_names().into_iter().collect();
    let mut indicator_weights = signal_weights(&fit.indicators, &indicator_cv.examples);
    indicator_weights.retain(|w| !firmographic.contains(&w.feature));
    let window = firsts
        .iter()
        .min()
        .zip(firsts.iter().max())
        .map(|(first, last)| tenure_proto::common::v1::DateRange {
            start: Some(time::to_date(*first)),
            end: last.succ_opt().map(time::to_date),
        });
    let report = pb::ProspectModel {
        model_id: model_id.to_string(),
        status: pb::ModelStatus::Ready as i32,
        look_days,
        l2,
        as_of: as_of.map(time::to_date),
        example_count: fit_cv.examples.len() as i32,
        churn_count: fit_churned.iter().filter(|c| **c).count() as i32,
        cv_auc: crate::model::auc(&fit_cv.predictions, &fit_churned),
        cv_brier: Some(crate::model::brier(&fit_cv.predictions, &fit_churned)),
        firmographics: signal_weights(&fit.fit, &fit_cv.examples),
        indicator_example_count: indicator_cv.examples.len() as i32,
        indicator_cv_auc: crate::model::auc(&indicator_cv.predictions, &indicator_churned),
        indicators: indicator_weights,
        converged: fit_cv.converged && indicator_cv.converged,
        training_window: window,
        gather_seconds,
        fit_seconds,
        ..Default::default()
    };
    Ok((fit, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::pasts::remembered::{Remembered, day, signals};

    fn term(account: &str, first_paid: Option<&str>, paying_at_look: bool) -> FirstTerm {
        FirstTerm {
            account_id: account.to_owned(),
            first_paid_on: first_paid.map(|d| time::to_date(day(d))),
            term_months: 12,
            renewed: paying_at_look,
            paying_at_look,
            ..Default::default()
        }
    }

    /// A customer is read on its first paid day, and at the look day only
    /// when it still paid then; an account ingestion does not know, or a
    /// term without a first paid day, is left out.
    #[tokio::test]
    async fn past_customers_are_read_at_signing_and_at_the_look_day() {
        let pasts = Remembered {
            first_terms: vec![
                term("kept", Some("2025-01-01"), true),
                term("left", Some("2025-02-01"), false),
                term("erased", Some("2025-03-01"), true),
                term("never_paid", None, false),
            ],
            ..Default::default()
        }
        .knows(signals("kept", "2025-01-01", 2))
        .knows(signals("kept", "2025-04-01", 9))
        .knows(signals("left", "2025-02-01", 4));
        let (customers, firsts) = past_customers(&pasts, 90, None).await.unwrap();
        let read: Vec<(&str, bool, Option<f64>)> = customers
            .iter()
            .map(|c| {
                let at_look = c.indicators.as_ref().map(|i| i["active_users_30d"]);
                (c.account_id.as_str(), c.renewed, at_look)
            })
            .collect();
        assert_eq!(read, [("kept", true, Some(9.0)), ("left", false, None)]);
        assert_eq!(firsts, [day("2025-01-01"), day("2025-02-01")]);
        assert_eq!(
            pasts.asked(),
            [
                ("erased".to_owned(), day("2025-03-01")),
                ("erased".to_owned(), day("2025-05-30")),
                ("kept".to_owned(), day("2025-01-01")),
                ("kept".to_owned(), day("2025-04-01")),
                ("left".to_owned(), day("2025-02-01")),
            ]
        );
    }
}
