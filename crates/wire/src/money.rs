//! Money as integers: USD and DIEM amounts in base units of 10^-18 (like an ERC-20 token with
//! 18 decimals), never floats. Amounts are written to JSON as exact decimal numbers.

use serde::{Serialize, Serializer};

/// Base units in one whole dollar (or one DIEM).
pub const BASE_UNITS_PER_WHOLE: u128 = 1_000_000_000_000_000_000;
const DECIMALS: usize = 18;

/// An amount of USD (or DIEM, which is priced 1:1) in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Amount(pub u128);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a decimal amount (expected e.g. \"0.25\", at most 18 decimal places)")]
pub struct AmountParseError(pub String);

impl Amount {
    pub const ZERO: Self = Self(0);

    /// Parses a non-negative decimal such as `"0.02"` or `"15"`.
    pub fn parse_decimal(text: &str) -> Result<Self, AmountParseError> {
        let error = || AmountParseError(text.to_owned());
        let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty() && fraction.is_empty()
            || fraction.len() > DECIMALS
            || !whole
                .chars()
                .chain(fraction.chars())
                .all(|c| c.is_ascii_digit())
        {
            return Err(error());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| error())?
        };
        let mut fraction_units: u128 = 0;
        for (position, digit) in fraction.bytes().enumerate() {
            let scale = 10u128.pow(u32::try_from(DECIMALS - 1 - position).map_err(|_| error())?);
            fraction_units += u128::from(digit - b'0') * scale;
        }
        whole
            .checked_mul(BASE_UNITS_PER_WHOLE)
            .and_then(|units| units.checked_add(fraction_units))
            .map(Self)
            .ok_or_else(error)
    }

    /// The price of `tokens` at `per_million` tokens, rounded up to the next base unit so that
    /// usage is never undercharged by rounding.
    pub fn for_tokens(per_million: Amount, tokens: u64) -> Self {
        let product = per_million.0.saturating_mul(u128::from(tokens));
        Self(product.div_ceil(1_000_000))
    }

    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// Exact decimal text, without trailing zeros: `"0.000002"`, `"15"`.
    pub fn to_decimal_string(self) -> String {
        let whole = self.0 / BASE_UNITS_PER_WHOLE;
        let fraction = self.0 % BASE_UNITS_PER_WHOLE;
        if fraction == 0 {
            return whole.to_string();
        }
        let digits = format!("{fraction:0width$}", width = DECIMALS);
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl Serialize for Amount {
    /// Written as a JSON number with the exact decimal digits (no float rounding on the way).
    /// Serialize it directly (`serde_json::to_string`/`to_writer`): going through
    /// `serde_json::Value` (`json!`, `to_value`) turns it back into a float.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.to_decimal_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_decimals_exactly() {
        for text in ["0", "15", "0.02", "0.000000000000000001", "123.45"] {
            assert_eq!(
                Amount::parse_decimal(text).map(Amount::to_decimal_string),
                Ok(text.to_owned())
            );
        }
        assert_eq!(
            Amount::parse_decimal("0.5").map(|a| a.0),
            Ok(BASE_UNITS_PER_WHOLE / 2)
        );
        for bad in [
            "",
            ".",
            "-1",
            "1e3",
            "0.0000000000000000001",
            "abc",
            "1.2.3",
        ] {
            assert!(Amount::parse_decimal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_prices_round_up_to_a_base_unit() {
        let per_million = Amount::parse_decimal("0.02").expect("valid");
        assert_eq!(Amount::for_tokens(per_million, 1_000_000), per_million);
        assert_eq!(
            Amount::for_tokens(per_million, 100).to_decimal_string(),
            "0.000002"
        );
        assert_eq!(Amount::for_tokens(Amount(1), 1), Amount(1));
        assert_eq!(Amount::for_tokens(per_million, 0), Amount::ZERO);
    }

    #[test]
    fn serializes_as_an_exact_json_number() {
        let amount = Amount::parse_decimal("0.000000123456789012").expect("valid");
        #[derive(Serialize)]
        struct Priced {
            usd: Amount,
        }
        let json = serde_json::to_string(&Priced { usd: amount }).expect("serializes");
        assert_eq!(json, r#"{"usd":0.000000123456789012}"#);
    }
}
