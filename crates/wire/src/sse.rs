//! An incremental Server-Sent Events parser for streams from providers and upstream engines:
//! bytes in, whole `data` events out, with a bound on how large one event may grow.

/// One event from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The `data` of an event (several `data:` lines joined with newlines).
    Data(String),
    /// `data: [DONE]`, the OpenAI end-of-stream marker.
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("an event grew past {0} bytes")]
    EventTooLarge(usize),
    #[error("the stream is not UTF-8")]
    NotUtf8,
}

/// Parses SSE incrementally. Feed it bytes as they arrive, in any split.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
    max_event_bytes: usize,
}

impl SseParser {
    /// `max_event_bytes` bounds the memory one event (or one unterminated line) may take.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Appends bytes and returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = rest.iter().position(|&byte| byte == b'\n');
            let piece = &rest[..end.unwrap_or(rest.len())];
            if self.line.len() + self.data.len() + piece.len() > self.max_event_bytes {
                return Err(SseError::EventTooLarge(self.max_event_bytes));
            }
            self.line.extend_from_slice(piece);
            let Some(end) = end else {
                break;
            };
            rest = &rest[end + 1..];
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                if self.has_data {
                    let data = std::mem::take(&mut self.data);
                    self.has_data = false;
                    events.push(if data == "[DONE]" {
                        SseEvent::Done
                    } else {
                        SseEvent::Data(data)
                    });
                }
                continue;
            }
            let Ok(line) = std::str::from_utf8(&self.line) else {
                self.line.clear();
                return Err(SseError::NotUtf8);
            };
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            // Lines starting with ':' are comments (keep-alives); only `data` matters here.
            if field == "data" {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
                self.has_data = true;
            }
            // The buffer is kept for the next line.
            self.line.clear();
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = b": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::new(1024);
            let mut events = parser.push(&stream[..split]).expect("valid");
            events.extend(parser.push(&stream[split..]).expect("valid"));
            assert_eq!(
                events,
                vec![
                    SseEvent::Data("{\"a\":1}".into()),
                    SseEvent::Data("line1\nline2".into()),
                    SseEvent::Done
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_endless_line_is_cut_off() {
        let mut parser = SseParser::new(64);
        assert_eq!(parser.push(&[b'x'; 100]), Err(SseError::EventTooLarge(64)));
    }

    #[test]
    fn garbage_without_events_yields_nothing() {
        let mut parser = SseParser::new(64);
        assert_eq!(
            parser
                .push(b"HTTP/1.1 200 OK\nnonsense\n")
                .expect("no error"),
            vec![]
        );
    }
}
