//! Binary HTTP (RFC 9292) framing for streamed responses, and padding.
//!
//! A streamed reply is an indeterminate-length Binary HTTP response written piece by piece: a
//! head (status and fields), one content chunk per server-sent event, and an end. Each piece is
//! sealed as one chunk of chunked OHTTP, so each is padded first:
//! - the head with a `padding` field, to a multiple of [`EVENT_BUCKET_BYTES`];
//! - every event with an SSE comment line (which every SSE client skips), to a multiple of
//!   [`EVENT_BUCKET_BYTES`];
//! - a whole message (a request, or a reply that is not a stream) with trailing zeros, which
//!   RFC 9292 allows after any message, to [`message_bucket`].

/// Events and response heads are padded to a multiple of this many bytes. One token's event is
/// about 200 bytes, so nearly every event of a reply has the same sealed size.
pub const EVENT_BUCKET_BYTES: usize = 256;
/// The smallest size a whole message is padded to.
pub const MIN_MESSAGE_BUCKET_BYTES: usize = 1024;
/// Above this size, messages are padded to a multiple of it rather than to a power of two.
pub const LARGE_MESSAGE_STEP_BYTES: usize = 64 * 1024;

/// Binary HTTP's framing indicator for an indeterminate-length response.
const INDETERMINATE_RESPONSE: u64 = 3;
/// Name of the field that pads a head.
const PADDING_FIELD: &[u8] = b"padding";

/// The size a message of `length` bytes is padded to: a power of two from 1 KiB to 64 KiB,
/// then the next multiple of 64 KiB (so padding never more than doubles a small message, and
/// adds at most 64 KiB to a large one).
pub fn message_bucket(length: usize) -> usize {
    if length <= LARGE_MESSAGE_STEP_BYTES {
        length.max(MIN_MESSAGE_BUCKET_BYTES).next_power_of_two()
    } else {
        length.div_ceil(LARGE_MESSAGE_STEP_BYTES) * LARGE_MESSAGE_STEP_BYTES
    }
}

/// Pads an encoded Binary HTTP message with zeros to its bucket.
pub fn pad_message(message: &mut Vec<u8>) {
    message.resize(message_bucket(message.len()), 0);
}

/// One server-sent event (ending in its blank line) with a comment line in front of it that
/// brings its length to a multiple of [`EVENT_BUCKET_BYTES`].
pub fn pad_event(event: &[u8]) -> Vec<u8> {
    // The shortest comment is ":\n".
    let target = (event.len() + 2).div_ceil(EVENT_BUCKET_BYTES) * EVENT_BUCKET_BYTES;
    let mut padded = Vec::with_capacity(target);
    padded.push(b':');
    padded.resize(target - event.len() - 1, b' ');
    padded.push(b'\n');
    padded.extend_from_slice(event);
    padded
}

/// An event without the padding [`pad_event`] put in front of it (any other event as it is).
pub fn strip_event_padding(event: &[u8]) -> &[u8] {
    if event.first() != Some(&b':') {
        return event;
    }
    match event.iter().position(|&byte| byte == b'\n') {
        Some(end) if event[1..end].iter().all(|&byte| byte == b' ') => &event[end + 1..],
        _ => event,
    }
}

/// Appends `value` as a variable-length integer (RFC 9000, section 16), shortest form.
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    if value < 1 << 6 {
        out.push(value as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&((value as u16) | 0x4000).to_be_bytes());
    } else if value < 1 << 30 {
        out.extend_from_slice(&((value as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    put_varint(out, name.len() as u64);
    out.extend_from_slice(name);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// The head of an indeterminate-length response: framing indicator, status, the fields, and a
/// `padding` field that brings it to a multiple of [`EVENT_BUCKET_BYTES`].
pub fn response_head<'a>(
    status: u16,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<u8> {
    let mut head = Vec::new();
    put_varint(&mut head, INDETERMINATE_RESPONSE);
    put_varint(&mut head, u64::from(status));
    for (name, value) in fields {
        put_field(&mut head, name, value);
    }
    // The padding field: name length, name, a two-byte value length (a varint need not be in
    // its shortest form, which makes the arithmetic exact), the value, then the terminator.
    let fixed = head.len() + 1 + PADDING_FIELD.len() + 2 + 1;
    let target = fixed.div_ceil(EVENT_BUCKET_BYTES) * EVENT_BUCKET_BYTES;
    let filler = target - fixed;
    put_varint(&mut head, PADDING_FIELD.len() as u64);
    head.extend_from_slice(PADDING_FIELD);
    // `filler` is below EVENT_BUCKET_BYTES, so it fits the two-byte form.
    head.extend_from_slice(&((filler as u16) | 0x4000).to_be_bytes());
    head.resize(head.len() + filler, b' ');
    head.push(0);
    head
}

/// One content chunk: its length, then the bytes. `data` must not be empty (an empty chunk
/// ends the content).
pub fn content_chunk(data: &[u8]) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(data.len() + 8);
    put_varint(&mut chunk, data.len() as u64);
    chunk.extend_from_slice(data);
    chunk
}

/// The end of an indeterminate-length message: the content's terminator and an empty trailer.
pub const END: [u8; 2] = [0, 0];

/// Splits a server-sent event stream into whole events (each with its blank line), whatever
/// pieces the bytes arrive in. An event that grows past the bound is passed on as it is.
#[derive(Debug)]
pub struct EventSplitter {
    buffer: Vec<u8>,
    max_event_bytes: usize,
}

impl EventSplitter {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max_event_bytes,
        }
    }

    /// Appends bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let searched_from = self.buffer.len().saturating_sub(1);
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut at = searched_from;
        while let Some(offset) = self.buffer[at..]
            .windows(2)
            .position(|window| window == b"\n\n")
        {
            let end = at + offset + 2;
            events.push(self.buffer[start..end].to_vec());
            start = end;
            at = end;
        }
        self.buffer.drain(..start);
        if self.buffer.len() > self.max_event_bytes {
            events.push(std::mem::take(&mut self.buffer));
        }
        events
    }

    /// What is left when the stream ends (an unterminated last event), if anything.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.buffer.is_empty()).then_some(self.buffer)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn buckets_are_powers_of_two_then_steps_of_64_kib() {
        assert_eq!(message_bucket(0), 1024);
        assert_eq!(message_bucket(1024), 1024);
        assert_eq!(message_bucket(1025), 2048);
        assert_eq!(message_bucket(40_000), 65_536);
        assert_eq!(message_bucket(65_536), 65_536);
        assert_eq!(message_bucket(65_537), 131_072);
        assert_eq!(message_bucket(200_000), 262_144);
        assert_eq!(message_bucket(262_145), 327_680);
        for length in [0, 1, 700, 5000, 70_000, 1_000_000] {
            let mut message = vec![1u8; length];
            pad_message(&mut message);
            assert!(message.len() >= length);
            assert_eq!(message.len() % 1024, 0);
            assert!(message[length..].iter().all(|&byte| byte == 0));
        }
    }

    #[test]
    fn padded_events_fill_whole_buckets_and_parse_to_the_same_data() {
        for length in [0usize, 1, 100, 253, 254, 255, 256, 600] {
            let event = format!("data: {}\n\n", "x".repeat(length));
            let padded = pad_event(event.as_bytes());
            assert_eq!(padded.len() % EVENT_BUCKET_BYTES, 0, "{length}");
            assert!(padded.len() - event.len() < EVENT_BUCKET_BYTES + 2);
            assert_eq!(strip_event_padding(&padded), event.as_bytes());
            let mut parser = wire::sse::SseParser::new(1 << 20);
            let events = parser.push(&padded).expect("parses");
            assert_eq!(
                events,
                [wire::sse::SseEvent::Data("x".repeat(length))],
                "{length}"
            );
        }
    }

    #[test]
    fn only_padding_is_stripped() {
        for event in [&b": keep-alive\n\n"[..], b"data: x\n\n", b":", b""] {
            assert_eq!(strip_event_padding(event), event);
        }
        assert_eq!(strip_event_padding(b":   \ndata: x\n\n"), b"data: x\n\n");
        assert_eq!(strip_event_padding(b":\ndata: x\n\n"), b"data: x\n\n");
    }

    #[test]
    fn a_streamed_response_written_piece_by_piece_reads_back_as_binary_http() {
        let mut fields: Vec<(&[u8], &[u8])> = vec![(b"content-type", b"text/event-stream")];
        let long_value = vec![b'7'; 300];
        fields.push((b"x-venice-balance-usd", &long_value));
        let head = response_head(200, fields.iter().copied());
        assert_eq!(head.len() % EVENT_BUCKET_BYTES, 0);
        let mut message = head;
        let events = [b"data: one\n\n".to_vec(), vec![b'y'; 70_000]];
        for event in &events {
            message.extend(content_chunk(event));
        }
        message.extend(END);
        // Trailing zeros are padding.
        message.extend([0; 9]);
        let read = bhttp::Message::read_bhttp(&mut Cursor::new(&message[..])).expect("reads");
        assert_eq!(
            read.control().status().map(|status| status.code()),
            Some(200)
        );
        assert_eq!(
            read.header().get(b"content-type"),
            Some(&b"text/event-stream"[..])
        );
        assert_eq!(
            read.header().get(b"x-venice-balance-usd"),
            Some(&long_value[..])
        );
        assert_eq!(read.content(), &events.concat()[..]);

        for status in [100u16, 404, 599] {
            let head = response_head(status, []);
            assert_eq!(head.len(), EVENT_BUCKET_BYTES);
        }
    }

    #[test]
    fn varints_round_trip_at_every_width() {
        for value in [
            0u64,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            1 << 61,
        ] {
            let mut encoded = Vec::new();
            put_varint(&mut encoded, value);
            let expected_width = match value {
                0..=63 => 1,
                64..=16_383 => 2,
                16_384..=1_073_741_823 => 4,
                _ => 8,
            };
            assert_eq!(encoded.len(), expected_width, "{value}");
            // RFC 9000: the top two bits give the width, the rest is the value.
            assert_eq!(
                usize::from(encoded[0] >> 6),
                expected_width.trailing_zeros() as usize
            );
            let decoded = encoded[1..]
                .iter()
                .fold(u64::from(encoded[0] & 0x3f), |value, &byte| {
                    value << 8 | u64::from(byte)
                });
            assert_eq!(decoded, value);
        }
    }

    #[test]
    fn events_are_split_whatever_the_pieces() {
        let stream = b"data: a\n\ndata: bb\n\n: keep-alive\n\ndata: [DONE]\n\n";
        for piece in 1..stream.len() {
            let mut splitter = EventSplitter::new(1024);
            let mut events = Vec::new();
            for bytes in stream.chunks(piece) {
                events.extend(splitter.push(bytes));
            }
            assert!(splitter.finish().is_none());
            assert_eq!(
                events,
                [
                    b"data: a\n\n".to_vec(),
                    b"data: bb\n\n".to_vec(),
                    b": keep-alive\n\n".to_vec(),
                    b"data: [DONE]\n\n".to_vec(),
                ],
                "{piece}"
            );
        }
        let mut splitter = EventSplitter::new(8);
        assert_eq!(
            splitter.push(b"data: 0123456789"),
            [b"data: 0123456789".to_vec()]
        );
        assert!(splitter.push(b"data: x").is_empty());
        assert_eq!(splitter.finish(), Some(b"data: x".to_vec()));
    }
}
