//! Typed inputs: what a request carries, parsed at the gRPC edge into types
//! that cannot hold a bad value, so that the domain behind the edge never
//! checks again. Each is `TryFrom` its wire form, failing with an
//! [`Invalid`] that says what is wrong and where below the field (`end`, for
//! a window's end); [`Violations::parse`] records that under the field's
//! path, so a caller still learns every bad field of a request at once.

use std::fmt;

use chrono::NaiveDate;
use tenure_proto::common::v1::{Date, DateRange};

use crate::Violations;

/// Longest id a caller may give.
pub const MAX_ID_CHARS: usize = 128;

/// Why a value did not parse: descriptions, each under a part of the value
/// (empty: the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(Vec<(&'static str, String)>);

impl Invalid {
    pub fn new(description: impl Into<String>) -> Self {
        Self(vec![("", description.into())])
    }
}

impl Violations {
    /// `value` as a `T`, or `None` with a violation under `field` (and the
    /// part below it the parse names) for each thing wrong with it.
    pub fn parse<T, S>(&mut self, field: &str, value: S) -> Option<T>
    where
        T: TryFrom<S, Error = Invalid>,
    {
        match T::try_from(value) {
            Ok(parsed) => Some(parsed),
            Err(Invalid(problems)) => {
                for (part, description) in problems {
                    if part.is_empty() {
                        self.add(field, description);
                    } else {
                        self.add(format!("{field}.{part}"), description);
                    }
                }
                None
            }
        }
    }
}

impl Violations {
    /// Each of `values` as a `T`, with a violation under `field[i]` for
    /// each that is not one.
    pub fn parse_each<'a, T>(&mut self, field: &str, values: &'a [String]) -> Vec<T>
    where
        T: TryFrom<&'a String, Error = Invalid>,
    {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, value)| self.parse(&format!("{field}[{i}]"), value))
            .collect()
    }
}

/// `value` as a `T`, or INVALID_ARGUMENT naming `field`: for a value that
/// is checked alone.
pub fn parse<T, S>(field: &str, value: S) -> crate::ApiResult<T>
where
    T: TryFrom<S, Error = Invalid>,
{
    let mut violations = Violations::default();
    let parsed = violations.parse(field, value);
    violations.into_result()?;
    parsed.ok_or_else(|| crate::ApiError::invalid(field, "is not valid"))
}

/// An id a caller gives: not blank, at most [`MAX_ID_CHARS`] characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<&str> for Id {
    type Error = Invalid;

    fn try_from(value: &str) -> Result<Self, Invalid> {
        if value.trim().is_empty() {
            Err(Invalid::new("is required"))
        } else if value.chars().count() > MAX_ID_CHARS {
            Err(Invalid::new(format!(
                "must be at most {MAX_ID_CHARS} characters"
            )))
        } else {
            Ok(Self(value.to_owned()))
        }
    }
}

impl TryFrom<&String> for Id {
    type Error = Invalid;

    fn try_from(value: &String) -> Result<Self, Invalid> {
        Self::try_from(value.as_str())
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A window of days `[start, end)`, either end open; a start is before its
/// end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

/// A period of days `[start, end)` with both ends given, start before end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// The bounds of `range`, each checked, a missing one refused when
/// `required`, and a start before its end.
fn bounds(range: Option<&DateRange>, required: bool) -> Result<Window, Invalid> {
    let mut problems = Vec::new();
    let mut bound = |value: Option<&Date>, part: &'static str| match value {
        Some(date) => match crate::time::valid_date(date) {
            Ok(day) => Some(day),
            Err(description) => {
                problems.push((part, description));
                None
            }
        },
        None => {
            if required {
                problems.push((part, "is required".to_owned()));
            }
            None
        }
    };
    let start = bound(range.and_then(|r| r.start.as_ref()), "start");
    let end = bound(range.and_then(|r| r.end.as_ref()), "end");
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        problems.push(("end", "must be after start".to_owned()));
    }
    if problems.is_empty() {
        Ok(Window { start, end })
    } else {
        Err(Invalid(problems))
    }
}

impl TryFrom<Option<&DateRange>> for Window {
    type Error = Invalid;

    fn try_from(range: Option<&DateRange>) -> Result<Self, Invalid> {
        bounds(range, false)
    }
}

impl TryFrom<Option<&DateRange>> for Period {
    type Error = Invalid;

    fn try_from(range: Option<&DateRange>) -> Result<Self, Invalid> {
        match bounds(range, true)? {
            Window {
                start: Some(start),
                end: Some(end),
            } => Ok(Self { start, end }),
            _ => Err(Invalid::new("is required")),
        }
    }
}

impl From<Period> for Window {
    fn from(period: Period) -> Self {
        Self {
            start: Some(period.start),
            end: Some(period.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: i32, d: i32) -> Date {
        Date {
            year: y,
            month: m,
            day: d,
        }
    }

    fn range(start: Option<Date>, end: Option<Date>) -> DateRange {
        DateRange { start, end }
    }

    fn violations_of<T: TryFrom<S, Error = Invalid>, S>(value: S) -> Vec<(String, String)> {
        let mut violations = Violations::default();
        assert!(violations.parse::<T, S>("window", value).is_none());
        violations
            .iter()
            .map(|(f, d)| (f.to_owned(), d.to_owned()))
            .collect()
    }

    #[test]
    fn ids_are_given_and_short() {
        assert_eq!(Id::try_from("acct-1").unwrap().as_str(), "acct-1");
        assert_eq!(Id::try_from("  "), Err(Invalid::new("is required")));
        let long = "x".repeat(MAX_ID_CHARS + 1);
        assert!(Id::try_from(long.as_str()).is_err());
        assert!(Id::try_from("é".repeat(MAX_ID_CHARS).as_str()).is_ok());
    }

    #[test]
    fn windows_may_be_open_but_never_backwards() {
        let open = Window::try_from(None).unwrap();
        assert_eq!(open, Window::default());
        let half = Window::try_from(Some(&range(Some(date(2026, 1, 1)), None))).unwrap();
        assert_eq!(half.start, NaiveDate::from_ymd_opt(2026, 1, 1));
        assert_eq!(
            violations_of::<Window, _>(Some(&range(
                Some(date(2026, 2, 1)),
                Some(date(2026, 1, 1))
            ))),
            [("window.end".to_owned(), "must be after start".to_owned())]
        );
        assert_eq!(
            violations_of::<Window, _>(Some(&range(Some(date(2026, 2, 30)), None))),
            [(
                "window.start".to_owned(),
                "is not a valid calendar date in years 1900-2200".to_owned()
            )]
        );
    }

    #[test]
    fn periods_need_both_ends() {
        let period =
            Period::try_from(Some(&range(Some(date(2026, 1, 1)), Some(date(2026, 4, 1))))).unwrap();
        assert_eq!(period.end, NaiveDate::from_ymd_opt(2026, 4, 1).unwrap());
        assert_eq!(
            violations_of::<Period, _>(None),
            [
                ("window.start".to_owned(), "is required".to_owned()),
                ("window.end".to_owned(), "is required".to_owned())
            ]
        );
        assert_eq!(
            violations_of::<Period, _>(Some(&range(None, Some(date(2026, 13, 1))))),
            [
                ("window.start".to_owned(), "is required".to_owned()),
                (
                    "window.end".to_owned(),
                    "is not a valid calendar date in years 1900-2200".to_owned()
                )
            ]
        );
    }
}
