//! Account signals from ingestion: streamed, and as named numeric values for
//! scoring.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use tenure_platform::client::TracedChannel;
use tenure_platform::{ApiError, ApiResult, time};
use tenure_proto::ingestion::v1::attribute_value::Value;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{
    AccountDay, AccountSignals, StreamAccountSignalsRequest, StreamAccountSignalsResponse,
};

/// Ingestion's stream of account signals, read one account at a time.
pub struct SignalStream(tonic::Streaming<StreamAccountSignalsResponse>);

impl SignalStream {
    pub async fn open(
        ingestion: &IngestionServiceClient<TracedChannel>,
        request: StreamAccountSignalsRequest,
    ) -> ApiResult<Self> {
        let stream = ingestion
            .clone()
            .stream_account_signals(request)
            .await
            .map_err(|s| ApiError::from_upstream(s, "account signals"))?
            .into_inner();
        Ok(Self(stream))
    }

    /// The next account's signals; `None` at the end.
    pub async fn next(&mut self) -> ApiResult<Option<AccountSignals>> {
        loop {
            let message = self
                .0
                .message()
                .await
                .map_err(|s| ApiError::from_upstream(s, "account signals"))?;
            match message {
                None => return Ok(None),
                Some(message) => {
                    if let Some(signals) = message.signals {
                        return Ok(Some(signals));
                    }
                }
            }
        }
    }
}

/// A request for each (account, day)'s signals, in the order given.
pub fn at_days(pairs: &[(String, NaiveDate)]) -> StreamAccountSignalsRequest {
    StreamAccountSignalsRequest {
        at: pairs
            .iter()
            .map(|(account_id, day)| AccountDay {
                account_id: account_id.clone(),
                as_of: Some(time::to_date(*day)),
            })
            .collect(),
        ..Default::default()
    }
}

/// The signals a measure may name (besides `attributes.<name>`).
pub const KNOWN_SIGNALS: &[&str] = &[
    "seats_purchased",
    "active_users_7d",
    "active_users_30d",
    "license_utilization_pct",
    "basic_features_used_30d",
    "advanced_features_used_30d",
    "usage_trend_pct",
    "days_since_last_activity",
    "open_tickets_p1",
    "open_tickets_p2",
    "open_tickets_p3",
    "open_tickets_p4",
    "defect_share_pct",
    "median_resolution_hours",
    "latest_nps",
    "nps_change",
    "max_days_overdue",
    "sponsor_changed_90d",
    "champion_changed_90d",
    "active_champions",
    "days_to_renewal",
    "arr_growth_pct",
    "success_plan_attainment_pct",
    "success_plan_on_track_pct",
    "risk_signals_90d",
    "csm_assessment",
];

/// Whether a measure may name `signal`.
pub fn is_known(signal: &str) -> bool {
    KNOWN_SIGNALS.contains(&signal)
        || signal.strip_prefix("attributes.").is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// The present signals of an account; a signal without data is absent.
pub fn values(s: &AccountSignals) -> BTreeMap<String, f64> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let present: [(&str, Option<f64>); 25] = [
        ("seats_purchased", Some(f64::from(s.seats_purchased))),
        ("active_users_7d", Some(f64::from(s.active_users_7d))),
        ("active_users_30d", Some(f64::from(s.active_users_30d))),
        ("license_utilization_pct", s.license_utilization_pct),
        (
            "basic_features_used_30d",
            Some(f64::from(s.basic_features_used_30d)),
        ),
        (
            "advanced_features_used_30d",
            Some(f64::from(s.advanced_features_used_30d)),
        ),
        ("usage_trend_pct", s.usage_trend_pct),
        (
            "days_since_last_activity",
            s.days_since_last_activity.map(f64::from),
        ),
        ("open_tickets_p1", Some(f64::from(s.open_tickets_p1))),
        ("open_tickets_p2", Some(f64::from(s.open_tickets_p2))),
        ("open_tickets_p3", Some(f64::from(s.open_tickets_p3))),
        ("open_tickets_p4", Some(f64::from(s.open_tickets_p4))),
        ("defect_share_pct", s.defect_share_pct),
        ("median_resolution_hours", s.median_resolution_hours),
        ("latest_nps", s.latest_nps.map(f64::from)),
        ("nps_change", s.nps_change.map(f64::from)),
        ("max_days_overdue", Some(f64::from(s.max_days_overdue))),
        ("sponsor_changed_90d", Some(flag(s.sponsor_changed_90d))),
        ("champion_changed_90d", Some(flag(s.champion_changed_90d))),
        ("active_champions", Some(f64::from(s.active_champions))),
        ("days_to_renewal", s.days_to_renewal.map(f64::from)),
        ("arr_growth_pct", s.arr_growth_pct),
        ("success_plan_attainment_pct", s.success_plan_attainment_pct),
        ("success_plan_on_track_pct", s.success_plan_on_track_pct),
        ("risk_signals_90d", Some(f64::from(s.risk_signals_90d))),
    ];
    let mut out: BTreeMap<String, f64> = present
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect();
    for (name, attribute) in &s.attributes {
        let value = match attribute.value {
            Some(Value::Number(n)) => n,
            Some(Value::Boolean(b)) => flag(b),
            _ => continue,
        };
        out.insert(format!("attributes.{name}"), value);
    }
    out
}

/// The categorical signals of an account: its segment and its category
/// attributes.
pub fn categories(s: &AccountSignals) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !s.segment.is_empty() {
        out.insert("segment".to_owned(), s.segment.clone());
    }
    for (name, attribute) in &s.attributes {
        if let Some(Value::Category(category)) = &attribute.value {
            out.insert(format!("attributes.{name}"), category.clone());
        }
    }
    out
}
