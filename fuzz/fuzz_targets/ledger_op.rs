//! A ledger operation as the journal stores it: decoding never panics, and an operation that
//! decodes encodes back to exactly the same bytes (one encoding per operation, so replaying a
//! journal and hashing its records agree).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(op) = ledger_store::codec::decode_op(bytes) {
        let mut encoded = Vec::new();
        ledger_store::codec::encode_op(&op, &mut encoded);
        assert_eq!(encoded, bytes, "{op:?}");
    }
});
