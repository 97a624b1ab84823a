//! What forecasts learn from history (renewal rates by segment, the
//! calibration of model probabilities, the model's term), computed from
//! every contract ever due: a read that grows with the history, so it is
//! kept per day it is known on until the history changes.
//!
//! Changes are counted by `renewals.history_version`, a sequence that
//! constraint triggers advance as each transaction changing contracts,
//! outcomes, subscription versions or account segments commits (migration
//! `history_version`); an entry is used while the counter stands where it
//! stood when the entry was read, and for at most [`MOST_AGE`] (a change
//! committing while an entry is read may go unnoticed that long).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::contracts;
use crate::forecast::{Calibration, Rates};

/// The longest an entry is used, however still the counter stands.
pub const MOST_AGE: Duration = Duration::from_secs(60);
/// Days kept at once (a backtest asks for two, a report for a few).
const MOST_DAYS: usize = 16;

/// The history-derived figures as of one day.
#[derive(Clone, Debug)]
pub struct History {
    pub rates: Rates,
    pub calibration: Calibration,
    pub model_term_days: Option<f64>,
}

struct Entry {
    version: i64,
    read_at: Instant,
    history: Arc<History>,
}

/// The figures by day known on, shared by a service's requests.
#[derive(Clone, Default)]
pub struct HistoryCache(Arc<Mutex<HashMap<NaiveDate, Entry>>>);

impl std::fmt::Debug for HistoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistoryCache")
    }
}

impl HistoryCache {
    /// The figures as known on `known`, read again if the history changed
    /// since they were last read (or they are older than [`MOST_AGE`]).
    pub async fn get(&self, pool: &PgPool, known: NaiveDate) -> sqlx::Result<Arc<History>> {
        let version: i64 = sqlx::query_scalar("SELECT last_value FROM renewals.history_version")
            .fetch_one(pool)
            .await?;
        if let Some(entry) = self.lock().get(&known)
            && entry.version == version
            && entry.read_at.elapsed() < MOST_AGE
        {
            return Ok(entry.history.clone());
        }
        let read_at = Instant::now();
        let history = Arc::new(History {
            rates: contracts::rates(pool, known).await?,
            calibration: contracts::calibration(pool, known).await?,
            model_term_days: contracts::outcome_term_days(pool, known).await?,
        });
        let mut entries = self.lock();
        if entries.len() >= MOST_DAYS && !entries.contains_key(&known) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.read_at)
                .map(|(day, _)| *day);
            if let Some(day) = oldest {
                entries.remove(&day);
            }
        }
        entries.insert(
            known,
            Entry {
                version,
                read_at,
                history: history.clone(),
            },
        );
        Ok(history)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NaiveDate, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
