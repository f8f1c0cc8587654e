//! Account identities: a 20-byte address (an Ethereum address in practice) and its `0x` hex text.
//! Owns naming only; proving that a signer holds an address's key happens outside this crate.

use std::fmt;

/// A 20-byte account id. The ledger trusts the caller that `signer` is proven; signatures are
/// checked by the store before an operation reaches [`crate::Ledger::apply`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The all-zero address, which the ledger refuses as the admin or treasury because by
    /// convention nobody holds its key.
    pub const ZERO: Self = Self([0; 20]);

    /// Parses `0x` followed by 40 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))?;
        // `from_str_radix` alone would accept a sign, so every character is checked first.
        if digits.len() != 40 || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 20];
        for (index, byte) in bytes.iter_mut().enumerate() {
            let pair = digits.get(index * 2..index * 2 + 2)?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("0x")?;
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_text_round_trips() {
        let text = "0x00112233445566778899aabbccddeeff00112233";
        let address = Address::from_hex(text).expect("valid address");
        assert_eq!(address.to_string(), text);
        assert_eq!(
            Address::from_hex("0x00112233445566778899AABBCCDDEEFF00112233"),
            Some(address)
        );
        for bad in [
            "",
            "0x",
            "00112233445566778899aabbccddeeff00112233",
            "0x0011",
            "0xzz112233445566778899aabbccddeeff00112233",
            "0x00112233445566778899aabbccddeeff0011223+",
            "0x+0112233445566778899aabbccddeeff00112233",
        ] {
            assert_eq!(Address::from_hex(bad), None, "{bad}");
        }
    }
}
