//! The renewal-approaching sweep: for each open opportunity, the tightest
//! threshold (e.g. 120/90/60/30 days out) it has crossed is announced to
//! playbooks once. Thresholds passed while a tighter one was already due
//! are recorded without an event, so an opportunity found 20 days out gets
//! one event, not four.

use std::collections::HashMap;

use chrono::NaiveDate;
use sqlx::PgPool;
use tenure_platform::{outbox, time};
use tenure_proto::common::v1::Money;
use tenure_proto::playbooks::v1::{NotifyRenewalApproachingRequest, RenewalApproaching};

use crate::SCHEMA;
use crate::notify::TOPIC_RENEWAL_APPROACHING;

/// Default thresholds, days before the term end (`RENEWALS_REMINDER_DAYS`).
pub const DEFAULT_THRESHOLDS: [u32; 4] = [120, 90, 60, 30];

/// The service's `RENEWALS_REMINDER_DAYS` ("120,90,60,30"), read once at
/// start-up.
pub fn thresholds_from_settings(
    settings: &tenure_platform::config::Settings,
) -> anyhow::Result<Vec<u32>> {
    match settings.get("RENEWALS_REMINDER_DAYS") {
        Some(text) => parse_thresholds(&text),
        None => {
            let mut days = DEFAULT_THRESHOLDS.to_vec();
            days.sort_unstable();
            Ok(days)
        }
    }
}

pub fn parse_thresholds(text: &str) -> anyhow::Result<Vec<u32>> {
    let mut days = text
        .split(',')
        .map(|part| {
            let value: u32 = part.trim().parse()?;
            anyhow::ensure!(
                (1..=730).contains(&value),
                "threshold {value} is not 1-730 days"
            );
            Ok(value)
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    days.sort_unstable();
    days.dedup();
    anyhow::ensure!(!days.is_empty(), "no thresholds");
    Ok(days)
}

/// Sweeps as of `today`; returns the number of events queued.
pub async fn run(pool: &PgPool, today: NaiveDate, thresholds: &[u32]) -> anyhow::Result<usize> {
    let Some(widest) = thresholds.iter().max() else {
        return Ok(0);
    };
    let horizon = today + chrono::Days::new(u64::from(*widest));
    let candidates: Vec<(String, NaiveDate, String, String, i64)> = sqlx::query_as(
        "SELECT o.subscription_id, o.term_end, o.account_id, o.currency::text, o.arr_minor \
         FROM renewals.opportunities o \
         LEFT JOIN renewals.outcomes x \
           ON x.subscription_id = o.subscription_id AND x.term_end_date = o.term_end \
         WHERE o.state = 1 AND x.outcome_id IS NULL AND o.term_end >= $1 AND o.term_end <= $2 \
         ORDER BY o.subscription_id, o.term_end",
    )
    .bind(today)
    .bind(horizon)
    .fetch_all(pool)
    .await?;
    let recorded: Vec<(String, NaiveDate, i32)> = sqlx::query_as(
        "SELECT subscription_id, term_end, min(threshold_days) FROM renewals.reminders \
         WHERE term_end >= $1 GROUP BY subscription_id, term_end",
    )
    .bind(today)
    .fetch_all(pool)
    .await?;
    let recorded: HashMap<(String, NaiveDate), i32> =
        recorded.into_iter().map(|(s, d, t)| ((s, d), t)).collect();
    let mut emitted = 0;
    let mut tx = pool.begin().await?;
    for (subscription_id, term_end, account_id, currency, arr_minor) in candidates {
        let days = (term_end - today).num_days();
        let crossed: Vec<i32> = thresholds
            .iter()
            .map(|t| *t as i32)
            .filter(|t| days <= i64::from(*t))
            .collect();
        let Some(&tightest) = crossed.first() else {
            continue;
        };
        if recorded
            .get(&(subscription_id.clone(), term_end))
            .is_some_and(|t| *t <= tightest)
        {
            continue;
        }
        let inserted: Option<i32> = sqlx::query_scalar::<_, Option<i32>>(
            "WITH input AS (SELECT unnest($3::int4[]) AS threshold_days) \
             INSERT INTO renewals.reminders (subscription_id, term_end, threshold_days, emitted) \
             SELECT $1, $2, threshold_days, threshold_days = $4 FROM input \
             ON CONFLICT DO NOTHING RETURNING CASE WHEN emitted THEN threshold_days END",
        )
        .bind(&subscription_id)
        .bind(term_end)
        .bind(&crossed)
        .bind(tightest)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .flatten()
        .next();
        if inserted.is_none() {
            continue;
        }
        let event = NotifyRenewalApproachingRequest {
            request_id: String::new(),
            renewals: vec![RenewalApproaching {
                account_id,
                subscription_id,
                term_end_date: Some(time::to_date(term_end)),
                days_to_renewal: days as i32,
                threshold_days: tightest,
                arr: Some(Money {
                    currency_code: currency,
                    amount_minor: arr_minor,
                }),
            }],
        };
        outbox::enqueue(&mut tx, SCHEMA, TOPIC_RENEWAL_APPROACHING, &event).await?;
        emitted += 1;
    }
    tx.commit().await?;
    crate::contracts::record_horizon_probabilities(pool, today, None).await?;
    Ok(emitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_come_from_the_services_settings() {
        let settings = tenure_platform::config::Settings {
            overrides: [("RENEWALS_REMINDER_DAYS".to_owned(), "14,7".to_owned())].into(),
        };
        assert_eq!(thresholds_from_settings(&settings).unwrap(), [7, 14]);
    }

    #[test]
    fn thresholds_parse_sorted() {
        assert_eq!(
            parse_thresholds("30, 120,90,60,90").unwrap(),
            [30, 60, 90, 120]
        );
        assert!(parse_thresholds("0").is_err());
        assert!(parse_thresholds("ninety").is_err());
    }
}
