//! An upstream's server-sent event stream, in whatever pieces it arrives: parsing never panics,
//! and the events do not depend on where the stream was cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::sse::SseParser;

/// Small enough that the fuzzer reaches the bound.
const MAX_EVENT_BYTES: usize = 256;

fuzz_target!(|input: (u16, &[u8])| {
    let (cut, stream) = input;
    let whole = SseParser::new(MAX_EVENT_BYTES).push(stream);
    let cut = usize::from(cut) % (stream.len() + 1);
    let mut parser = SseParser::new(MAX_EVENT_BYTES);
    let pieces = parser.push(&stream[..cut]).and_then(|mut events| {
        events.extend(parser.push(&stream[cut..])?);
        Ok(events)
    });
    match (whole, pieces) {
        (Ok(whole), Ok(pieces)) => assert_eq!(whole, pieces),
        (Err(_), Err(_)) => {}
        (whole, pieces) => panic!("one push gave {whole:?}, two gave {pieces:?}"),
    }
});
