//! The one mapping from failures to `tonic::Status`.
//!
//! Each service's domain errors convert into [`ApiError`]; handlers return
//! [`ApiResult`] and the `From<ApiError> for Status` below is the only place a
//! status is built. Invalid input carries `google.rpc.BadRequest` field
//! violations; internal failures are logged with the trace id and reach the
//! caller only as "internal error" plus that trace id.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

pub type ApiResult<T> = Result<T, ApiError>;

/// A failure as the caller sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid argument: {0}")]
    InvalidArgument(Violations),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Violations::default();
        violations.add(field, description);
        Self::InvalidArgument(violations)
    }
}

impl ApiError {
    /// Maps the failure of a call to another Tenure service: what the caller
    /// can act on keeps its meaning, the rest is ours to log.
    pub fn from_upstream(status: tonic::Status, what: &str) -> Self {
        match status.code() {
            Code::NotFound => Self::NotFound(what.to_owned()),
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
                Self::Unavailable(format!("{what}: upstream unavailable, retry later"))
            }
            code => Self::Internal(anyhow::anyhow!(
                "upstream call for {what} failed: {code:?}: {}",
                status.message()
            )),
        }
    }
}

/// Whether a database error means the database is (for now) unavailable
/// rather than that the request went wrong: the pool or the connection is
/// gone, the server is shutting down or starting (SQLSTATE class 57P),
/// the connection failed (class 08) or no connection slot is left (53300).
fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("57P") || code.starts_with("08") || code == "53300"
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            tracing::warn!(error = %error, "database unavailable");
            return Self::Unavailable("database unavailable, retry later".to_owned());
        }
        Self::Internal(anyhow::Error::new(error).context("database error"))
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => {
                let message = violations.to_string();
                let details = ErrorDetails::with_bad_request(violations.into_field_violations());
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::NotFound(what) => Status::not_found(format!("{what} not found")),
            ApiError::AlreadyExists(message) => Status::already_exists(message),
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::Unavailable(message) => Status::unavailable(message),
            ApiError::Internal(error) => {
                let trace_id = crate::trace::trace_id(&tracing::Span::current());
                tracing::error!(error = ?error, trace_id = %trace_id, "internal error");
                Status::internal(format!("internal error (trace id {trace_id})"))
            }
        }
    }
}

/// What tonic answers for a request it could not read, as the caller's
/// error it is: a message over the size limit (tonic: OUT_OF_RANGE) is
/// RESOURCE_EXHAUSTED, one that does not decode (tonic: INTERNAL) is
/// INVALID_ARGUMENT. `None`: not such a failure.
pub fn unreadable_request(code: Code, message: &str) -> Option<Code> {
    let text = message.replace("%20", " ");
    match code {
        Code::OutOfRange if text.contains("length too large") => Some(Code::ResourceExhausted),
        Code::Internal if text.contains("failed to decode") => Some(Code::InvalidArgument),
        _ => None,
    }
}

/// [`unreadable_request`] applied to a status read from a request stream.
pub fn inbound_status(status: Status) -> Status {
    match unreadable_request(status.code(), status.message()) {
        Some(code) => Status::new(code, status.message().to_owned()),
        None => status,
    }
}

/// Field violations detailed in one answer; the rest are counted.
pub const MAX_DETAILED: usize = 100;
/// Bytes of field paths and descriptions detailed in one answer, well
/// under the 16 KB of trailers common clients accept; the rest are counted.
const MAX_DETAILED_BYTES: usize = 4 * 1024;
const MAX_FIELD_CHARS: usize = 160;
const MAX_DESCRIPTION_CHARS: usize = 300;

fn shortened(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Field violations collected while validating a request, named by path
/// (`accounts[3].name`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations {
    items: Vec<(String, String)>,
}

impl Violations {
    /// Records a violation. A field path or description past a few hundred
    /// characters (a path naming a caller's oversized map key, a value
    /// quoted back) is cut short: the answer travels in a trailer.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.items.push((
            shortened(field.into(), MAX_FIELD_CHARS),
            shortened(description.into(), MAX_DESCRIPTION_CHARS),
        ));
    }

    /// Adds a violation unless `ok`.
    pub fn check(&mut self, ok: bool, field: impl Into<String>, description: impl Into<String>) {
        if !ok {
            self.add(field, description);
        }
    }

    /// Adds a violation when `value` is empty or longer than `max` characters.
    pub fn require_text(&mut self, value: &str, field: impl Into<String>, max: usize) {
        if value.trim().is_empty() {
            self.add(field, "is required");
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    /// Adds a violation when `value` is longer than `max` characters.
    pub fn limit_text(&mut self, value: &str, field: impl Into<String>, max: usize) {
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().map(|(f, d)| (f.as_str(), d.as_str()))
    }

    /// `Ok(())` when nothing was violated, else `ApiError::InvalidArgument`.
    pub fn into_result(self) -> ApiResult<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self))
        }
    }

    /// The first [`MAX_DETAILED`] violations as details, and a last one
    /// counting the rest: the details travel in a trailer, which common
    /// clients cap at about 16 KB.
    fn into_field_violations(self) -> Vec<tonic_types::FieldViolation> {
        let total = self.items.len();
        let mut bytes = 0;
        let mut details: Vec<tonic_types::FieldViolation> = self
            .items
            .into_iter()
            .take(MAX_DETAILED)
            .take_while(|(field, description)| {
                bytes += field.len() + description.len();
                bytes <= MAX_DETAILED_BYTES
            })
            .map(|(field, description)| tonic_types::FieldViolation::new(field, description))
            .collect();
        let listed = details.len();
        if total > listed {
            details.push(tonic_types::FieldViolation::new(
                "",
                format!("and {} more violations not listed", total - listed),
            ));
        }
        details
    }
}

impl std::fmt::Display for Violations {
    /// The first few violations, in under a kilobyte or so: the message
    /// travels in a trailer beside the details.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 5;
        const SHOWN_BYTES: usize = 512;
        let mut written = 0;
        let mut shown = 0;
        for (field, description) in self.items.iter().take(SHOWN) {
            if shown > 0 && written + field.len() + description.len() > SHOWN_BYTES {
                break;
            }
            if shown > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{field}: {description}")?;
            written += field.len() + description.len();
            shown += 1;
        }
        if self.items.len() > shown {
            write!(f, "; and {} more", self.items.len() - shown)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn requests_tonic_cannot_read_are_the_callers_errors() {
        let too_large =
            "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes";
        assert_eq!(
            unreadable_request(Code::OutOfRange, too_large),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(
            unreadable_request(Code::OutOfRange, &too_large.replace(' ', "%20")),
            Some(Code::ResourceExhausted)
        );
        assert_eq!(
            unreadable_request(
                Code::Internal,
                "failed to decode Protobuf message: recursion limit reached"
            ),
            Some(Code::InvalidArgument)
        );
        assert_eq!(
            unreadable_request(Code::Internal, "internal error (trace id x)"),
            None
        );
        assert_eq!(
            unreadable_request(Code::OutOfRange, "page beyond the end"),
            None
        );
    }

    #[test]
    fn thousands_of_violations_fit_in_a_trailer() {
        use tonic_types::StatusExt as _;
        let mut violations = Violations::default();
        for i in 0..5000 {
            violations.add(format!("accounts[{i}].name"), "is required");
        }
        let status = Status::from(ApiError::InvalidArgument(violations));
        let details = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(details.len(), MAX_DETAILED + 1);
        assert!(details[MAX_DETAILED].description.contains("4900 more"));
        assert!(
            status.details().len() < 16 * 1024,
            "{} bytes",
            status.details().len()
        );
    }

    #[test]
    fn oversized_paths_and_descriptions_are_cut_to_fit() {
        use tonic_types::StatusExt as _;
        let mut violations = Violations::default();
        let key = "w".repeat(5000);
        for i in 0..50 {
            violations.add(
                format!("accounts[{i}].attributes.{key}"),
                format!("{key} is too long"),
            );
        }
        let status = Status::from(ApiError::InvalidArgument(violations));
        let details = status.get_details_bad_request().unwrap().field_violations;
        assert!(details[0].field.ends_with('…') && details[0].field.chars().count() == 161);
        assert!(
            details
                .last()
                .unwrap()
                .description
                .contains("more violations")
        );
        // The details travel base64-encoded.
        let trailer = status.details().len() * 4 / 3 + status.message().len();
        assert!(trailer < 12 * 1024, "{trailer} bytes");
    }

    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let mut violations = Violations::default();
        violations.require_text("", "accounts[1].name", 200);
        violations.check(false, "accounts[2].updated_at", "is in the future");
        let status = Status::from(ApiError::InvalidArgument(violations));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status
            .get_details_bad_request()
            .expect("bad request details");
        let fields: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["accounts[1].name", "accounts[2].updated_at"]);
        assert!(status.message().contains("accounts[1].name: is required"));
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = anyhow::anyhow!("relation \"ingestion.accounts\" does not exist");
        let status = Status::from(ApiError::Internal(error));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("relation"));
    }

    /// A database error as Postgres would report it, with its SQLSTATE.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "database error"
        }

        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn a_database_going_away_is_unavailable_not_internal() {
        let code = |state: &'static str| {
            Status::from(ApiError::from(sqlx::Error::Database(Box::new(Sqlstate(
                state,
            )))))
            .code()
        };
        // Admin shutdown, crash shutdown, connection failure, no slots left.
        for state in ["57P01", "57P02", "57P03", "08006", "08001", "53300"] {
            assert_eq!(code(state), Code::Unavailable, "{state}");
        }
        // A constraint or a syntax error is the request's own fault.
        for state in ["23505", "42601"] {
            assert_eq!(code(state), Code::Internal, "{state}");
        }
        assert_eq!(
            Status::from(ApiError::from(sqlx::Error::PoolTimedOut)).code(),
            Code::Unavailable
        );
    }
}
