//! Conversions between protobuf time types and chrono, with validation.

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use prost_types::Timestamp;
use tenure_proto::common::v1::Date;

use crate::error::Violations;

/// Converts a timestamp, or records a violation for `field`.
pub fn timestamp(
    value: Option<&Timestamp>,
    field: &str,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    let Some(value) = value else {
        violations.add(field, "is required");
        return None;
    };
    let converted = u32::try_from(value.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos))
        .filter(|t| (MIN_YEAR..=MAX_YEAR).contains(&t.year()));
    if converted.is_none() {
        violations.add(
            field,
            format!("is not a valid timestamp in years {MIN_YEAR}-{MAX_YEAR}"),
        );
    }
    converted
}

/// Business dates and times Tenure accepts; beyond them date arithmetic
/// (a year back, 90 days back) could leave chrono's range.
pub const MIN_YEAR: i32 = 1900;
pub const MAX_YEAR: i32 = 2200;

/// Converts a timestamp that must not lie further in the future than
/// `tolerance` (clocks of sources drift a little, never by hours).
pub fn past_timestamp(
    value: Option<&Timestamp>,
    field: &str,
    tolerance: chrono::Duration,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    let converted = timestamp(value, field, violations)?;
    if converted > Utc::now() + tolerance {
        violations.add(field, "is in the future");
        return None;
    }
    Some(converted)
}

pub fn to_timestamp(value: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: value.timestamp(),
        nanos: value.timestamp_subsec_nanos() as i32,
    }
}

/// Converts a calendar date, or records a violation for `field`.
pub fn date(value: Option<&Date>, field: &str, violations: &mut Violations) -> Option<NaiveDate> {
    let Some(value) = value else {
        violations.add(field, "is required");
        return None;
    };
    match valid_date(value) {
        Ok(day) => Some(day),
        Err(description) => {
            violations.add(field, description);
            None
        }
    }
}

/// A calendar date in the years Tenure accepts, or what is wrong with it.
pub fn valid_date(value: &Date) -> Result<NaiveDate, String> {
    from_date(value)
        .filter(|d| (MIN_YEAR..=MAX_YEAR).contains(&d.year()))
        .ok_or_else(|| format!("is not a valid calendar date in years {MIN_YEAR}-{MAX_YEAR}"))
}

/// A calendar date from its message, `None` when it names no day: for
/// dates a peer sent, which need no violation.
pub fn from_date(value: &Date) -> Option<NaiveDate> {
    let month = u32::try_from(value.month).ok()?;
    let day = u32::try_from(value.day).ok()?;
    NaiveDate::from_ymd_opt(value.year, month, day)
}

pub fn to_date(value: NaiveDate) -> Date {
    Date {
        year: value.year(),
        month: value.month() as i32,
        day: value.day() as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_impossible_dates_and_future_times() {
        let mut violations = Violations::default();
        assert!(
            date(
                Some(&Date {
                    year: 2026,
                    month: 2,
                    day: 30
                }),
                "d",
                &mut violations
            )
            .is_none()
        );
        let future = to_timestamp(Utc::now() + chrono::Duration::hours(2));
        let tolerance = chrono::Duration::minutes(5);
        assert!(past_timestamp(Some(&future), "t", tolerance, &mut violations).is_none());
        assert!(timestamp(None, "missing", &mut violations).is_none());
        let ancient = Timestamp {
            seconds: -70_000_000_000,
            nanos: 0,
        };
        assert!(timestamp(Some(&ancient), "ancient", &mut violations).is_none());
        let far = Date {
            year: 9999,
            month: 1,
            day: 1,
        };
        assert!(date(Some(&far), "far", &mut violations).is_none());
        let fields: Vec<_> = violations.iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["d", "t", "missing", "ancient", "far"]);
    }

    #[test]
    fn round_trips() {
        let now = DateTime::from_timestamp(1_764_000_000, 123_000_000).unwrap();
        let mut violations = Violations::default();
        assert_eq!(
            timestamp(Some(&to_timestamp(now)), "t", &mut violations),
            Some(now)
        );
        let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        assert_eq!(date(Some(&to_date(day)), "d", &mut violations), Some(day));
        assert!(violations.is_empty());
    }
}
