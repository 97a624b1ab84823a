//! Page sizes and opaque page tokens for every list RPC.
//!
//! A token is the URL-safe base64 of a JSON cursor (the sort key of the last
//! item returned), so a page is stable under concurrent inserts and a
//! tampered token is rejected as `INVALID_ARGUMENT` rather than misread.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{ApiError, ApiResult};

pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// The most a page of items may weigh, encoded: under the 4 MiB that gRPC
/// clients accept by default, whatever the items hold.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;

/// Keeps the leading `items` that together fit in `budget` bytes (at least
/// one); returns whether any were cut, in which case the page ends early
/// and the next one starts after the last kept item.
pub fn fit_bytes<T: prost::Message>(items: &mut Vec<T>, budget: usize) -> bool {
    let mut used = 0;
    let mut keep = items.len();
    for (i, item) in items.iter().enumerate() {
        // Each item costs its length and its field's tag and length prefix.
        used += item.encoded_len() + 8;
        if used > budget && i > 0 {
            keep = i;
            break;
        }
    }
    let cut = keep < items.len();
    items.truncate(keep);
    cut
}
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The page size asked for: 0 means the default; above the maximum is clamped.
pub fn page_size(requested: i32) -> ApiResult<u32> {
    match requested {
        n if n < 0 => Err(ApiError::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as u32).min(MAX_PAGE_SIZE)),
    }
}

/// Decodes a page token into its cursor; an empty token means the first page.
pub fn decode_token<C: DeserializeOwned>(token: &str) -> ApiResult<Option<C>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || ApiError::invalid("page_token", "is not a token this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    // A cursor is JSON; one written by hand could carry NUL, which Postgres
    // cannot compare with.
    if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(br"\u0000")) {
        return Err(invalid());
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| invalid())
}

/// Encodes a cursor as a page token.
pub fn encode_token<C: Serialize>(cursor: &C) -> String {
    // Serialising plain cursor structs cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// Given one row more than the page size was fetched, trims the extra row and
/// returns the token for the next page (empty on the last page).
pub fn finish_page<T, C: Serialize>(
    rows: &mut Vec<T>,
    size: u32,
    cursor: impl Fn(&T) -> C,
) -> String {
    if rows.len() > size as usize {
        rows.truncate(size as usize);
        rows.last()
            .map(|last| encode_token(&cursor(last)))
            .unwrap_or_default()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_fit_their_byte_budget() {
        let item = |n: usize| prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("x".repeat(n))),
        };
        let mut items: Vec<prost_types::Value> = (0..10).map(|_| item(1000)).collect();
        assert!(fit_bytes(&mut items, 3500));
        assert_eq!(items.len(), 3);
        let mut huge = vec![item(10_000), item(1)];
        assert!(
            fit_bytes(&mut huge, 100),
            "the rest waits for the next page"
        );
        assert_eq!(huge.len(), 1, "at least one item, however large");
        let mut small = vec![item(1); 5];
        assert!(!fit_bytes(&mut small, 1000));
        assert_eq!(small.len(), 5);
    }

    use super::*;

    #[test]
    fn sizes_default_clamp_and_reject_negative() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(1_000_000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = encode_token(&("acme".to_owned(), 42_i64));
        let cursor: Option<(String, i64)> = decode_token(&token).unwrap();
        assert_eq!(cursor, Some(("acme".to_owned(), 42)));
        assert!(decode_token::<(String, i64)>("not a token!").is_err());
        assert!(decode_token::<(String, i64)>("").unwrap().is_none());
        let nul = URL_SAFE_NO_PAD.encode(br#"["a\u0000",1]"#);
        assert!(decode_token::<(String, i64)>(&nul).is_err());
    }

    #[test]
    fn finish_page_trims_the_lookahead_row() {
        let mut rows = vec![1, 2, 3];
        let token = finish_page(&mut rows, 2, |r| *r);
        assert_eq!(rows, [1, 2]);
        assert_eq!(decode_token::<i32>(&token).unwrap(), Some(2));
        let mut rows = vec![1, 2];
        assert_eq!(finish_page(&mut rows, 2, |r| *r), "");
    }
}
