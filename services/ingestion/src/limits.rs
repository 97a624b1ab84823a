//! Ingestion's limits on what a call may carry, read once at start-up from
//! the settings (the environment unless the starter overrides them).

use chrono::Duration;
use tenure_platform::Violations;

use crate::convert::Checker;

/// Size limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most items in one batch call or stream chunk (`INGESTION_MAX_BATCH_ITEMS`).
    pub max_batch_items: usize,
    /// How far in the future a source timestamp may be (`INGESTION_FUTURE_TOLERANCE`).
    pub future_tolerance: Duration,
    /// Largest JSON of an item's free properties (`INGESTION_MAX_PROPERTIES_BYTES`).
    pub max_properties_bytes: usize,
    /// How far back a usage event may lie (`INGESTION_MAX_EVENT_AGE`): older
    /// ones are refused rather than each creating a month of storage.
    pub max_event_age: Duration,
    /// Most chunks one `StreamEvents` call may carry (`INGESTION_MAX_STREAM_CHUNKS`);
    /// a longer import opens another stream.
    pub max_stream_chunks: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_items: 5000,
            future_tolerance: Duration::minutes(5),
            max_properties_bytes: 16 * 1024,
            max_stream_chunks: 100_000,
            max_event_age: Duration::days(3650),
        }
    }
}

impl Limits {
    pub fn from_settings(settings: &tenure_platform::config::Settings) -> anyhow::Result<Self> {
        let mut limits = Self::default();
        if let Some(value) = settings.get("INGESTION_MAX_STREAM_CHUNKS") {
            limits.max_stream_chunks = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("INGESTION_MAX_STREAM_CHUNKS={value:?} is not a positive count")
            })?;
        }
        if let Some(value) = settings.get("INGESTION_MAX_BATCH_ITEMS") {
            limits.max_batch_items = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("INGESTION_MAX_BATCH_ITEMS={value:?} is not a positive count")
            })?;
        }
        if let Some(value) = settings.get("INGESTION_MAX_PROPERTIES_BYTES") {
            limits.max_properties_bytes = value.parse().map_err(|_| {
                anyhow::anyhow!("INGESTION_MAX_PROPERTIES_BYTES={value:?} is not a byte count")
            })?;
        }
        if let Some(value) = settings.get("INGESTION_MAX_EVENT_AGE") {
            limits.max_event_age = humantime::parse_duration(&value)
                .ok()
                .and_then(|d| Duration::from_std(d).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "INGESTION_MAX_EVENT_AGE={value:?} is not a duration like 3650d"
                    )
                })?;
        }
        if let Some(value) = settings.get("INGESTION_FUTURE_TOLERANCE") {
            limits.future_tolerance = humantime::parse_duration(&value)
                .ok()
                .and_then(|d| Duration::from_std(d).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "INGESTION_FUTURE_TOLERANCE={value:?} is not a duration like 5m"
                    )
                })?;
        }
        Ok(limits)
    }

    pub fn checker<'a>(&self, violations: &'a mut Violations) -> Checker<'a> {
        Checker {
            violations,
            future_tolerance: self.future_tolerance,
            max_event_age: self.max_event_age,
            max_properties: self.max_properties_bytes,
        }
    }
}
