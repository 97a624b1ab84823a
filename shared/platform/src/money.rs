//! Money as an ISO 4217 currency and integer minor units; never a float.

use tenure_proto::common::v1::Money;

use crate::error::Violations;

/// A validated amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount {
    /// Upper-case ISO 4217 code.
    pub currency: [u8; 3],
    pub minor: i64,
}

impl Amount {
    pub fn currency_code(&self) -> &str {
        std::str::from_utf8(&self.currency).unwrap_or("XXX")
    }

    pub fn to_proto(self) -> Money {
        Money {
            currency_code: self.currency_code().to_owned(),
            amount_minor: self.minor,
        }
    }
}

/// The largest amount accepted, in minor units (ten billion in a currency
/// of cents): more than any contract, and small enough that a million of
/// them sum without overflow in 64 bits.
pub const MAX_MINOR: i64 = 1_000_000_000_000;

/// Whether `code` is an ISO 4217 currency code (upper case).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && iso_currency::Currency::from_code(code).is_some()
}

/// Validates a non-negative amount, recording violations under `field`.
pub fn non_negative(
    value: Option<&Money>,
    field: &str,
    violations: &mut Violations,
) -> Option<Amount> {
    let Some(value) = value else {
        violations.add(field, "is required");
        return None;
    };
    let mut ok = true;
    if !is_currency_code(&value.currency_code) {
        violations.add(
            format!("{field}.currency_code"),
            "must be an ISO 4217 code such as USD",
        );
        ok = false;
    }
    if value.amount_minor < 0 {
        violations.add(format!("{field}.amount_minor"), "must not be negative");
        ok = false;
    } else if value.amount_minor > MAX_MINOR {
        violations.add(
            format!("{field}.amount_minor"),
            format!("must be at most {MAX_MINOR} minor units"),
        );
        ok = false;
    }
    ok.then(|| {
        let mut currency = [0u8; 3];
        currency.copy_from_slice(value.currency_code.as_bytes());
        Amount {
            currency,
            minor: value.amount_minor,
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_are_bounded_so_sums_cannot_wrap() {
        let money = |minor| Money {
            currency_code: "USD".into(),
            amount_minor: minor,
        };
        let mut violations = Violations::default();
        assert!(non_negative(Some(&money(MAX_MINOR)), "arr", &mut violations).is_some());
        assert!(non_negative(Some(&money(i64::MAX)), "arr", &mut violations).is_none());
        assert!(violations.to_string().contains("arr.amount_minor"));
        assert!(
            MAX_MINOR.checked_mul(1_000_000).is_some(),
            "a million of them sum"
        );
    }

    use super::*;

    #[test]
    fn accepts_iso_codes_only() {
        assert!(is_currency_code("USD"));
        assert!(is_currency_code("JPY"));
        assert!(!is_currency_code("usd"));
        assert!(!is_currency_code("ABC"));
        assert!(!is_currency_code("EURO"));
    }

    #[test]
    fn rejects_negative_and_unknown() {
        let mut violations = Violations::default();
        let money = Money {
            currency_code: "XYZ".into(),
            amount_minor: -5,
        };
        assert!(non_negative(Some(&money), "arr", &mut violations).is_none());
        let fields: Vec<_> = violations.iter().map(|(f, _)| f.to_owned()).collect();
        assert_eq!(fields, ["arr.currency_code", "arr.amount_minor"]);
        let good = Money {
            currency_code: "EUR".into(),
            amount_minor: 1200,
        };
        let amount = non_negative(Some(&good), "arr", &mut violations).unwrap();
        assert_eq!(amount.currency_code(), "EUR");
    }
}
