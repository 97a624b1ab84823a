//! How a webhook receiver knows a delivery is Tenure's, unchanged and fresh.
//!
//! Each delivery carries `x-tenure-delivery` (the same id on every retry of
//! a step), `x-tenure-timestamp` (Unix seconds when this attempt was sent)
//! and `x-tenure-signature: v1=<hex>`, the HMAC-SHA256 under
//! `PLAYBOOKS_WEBHOOK_SECRET` of `"{timestamp}.{delivery}.{body}"`. Since the
//! timestamp is signed, a receiver that refuses timestamps older than a few
//! minutes and remembers the deliveries it accepted within that window
//! cannot be made to act on a replayed request.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest signing secret the service accepts.
pub const MIN_SECRET_BYTES: usize = 16;

/// How far a receiver should let a timestamp lie from its clock.
pub const TOLERANCE_SECS: i64 = 300;

fn mac(secret: &[u8], timestamp: i64, delivery_id: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{timestamp}.{delivery_id}.").as_bytes());
    mac.update(body);
    mac
}

/// The `x-tenure-signature` value of a delivery.
pub fn sign(secret: &[u8], timestamp: i64, delivery_id: &str, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, delivery_id, body)
        .finalize()
        .into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// Why a receiver refuses a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A header is missing or not in its form.
    Malformed,
    /// The signature does not match the secret, timestamp, delivery and body.
    BadSignature,
    /// The timestamp lies outside the tolerance: an old request replayed.
    Stale,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Malformed => "malformed signature headers",
            Refused::BadSignature => "signature does not match",
            Refused::Stale => "timestamp outside the tolerance",
        })
    }
}

/// Checks a delivery as a receiver should, at `now` (Unix seconds). A
/// receiver should also refuse a delivery id it has accepted before.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    delivery_id: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), Refused> {
    let timestamp: i64 = timestamp.trim().parse().map_err(|_| Refused::Malformed)?;
    let hex = signature
        .trim()
        .strip_prefix("v1=")
        .ok_or(Refused::Malformed)?;
    if hex.len() % 2 != 0 {
        return Err(Refused::Malformed);
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| Refused::Malformed)?;
    mac(secret, timestamp, delivery_id, body)
        .verify_slice(&bytes)
        .map_err(|_| Refused::BadSignature)?;
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(Refused::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    #[test]
    fn a_signed_delivery_verifies_and_any_change_does_not() {
        let body = br#"{"account":"acme"}"#;
        let signature = sign(SECRET, 1_000, "run:1", body);
        assert_eq!(
            verify(SECRET, "1000", "run:1", &signature, body, 1_010),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, "1000", "run:1", &signature, b"{}", 1_010),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(SECRET, "1000", "run:2", &signature, body, 1_010),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(
                b"another secret!!",
                "1000",
                "run:1",
                &signature,
                body,
                1_010
            ),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(SECRET, "x", "run:1", &signature, body, 1_010),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn a_replay_is_refused_old_or_with_a_new_timestamp() {
        let body = b"{}";
        let signature = sign(SECRET, 1_000, "run:1", body);
        assert_eq!(
            verify(
                SECRET,
                "1000",
                "run:1",
                &signature,
                body,
                1_000 + TOLERANCE_SECS + 1
            ),
            Err(Refused::Stale),
            "replayed later"
        );
        assert_eq!(
            verify(SECRET, "1400", "run:1", &signature, body, 1_400),
            Err(Refused::BadSignature),
            "replayed with a fresh timestamp"
        );
    }
}
