//! Turning a stream of token bytes into text: whole UTF-8 characters only, and stop strings cut
//! out before they reach the client. Pure code, no FFI.

/// Buffers bytes until they form whole UTF-8 characters, because one token's piece may end in the
/// middle of a multi-byte character and a client must never see half of one.
#[derive(Debug, Default)]
pub(crate) struct Utf8Decoder {
    pending: Vec<u8>,
}

/// The longest UTF-8 sequence is four bytes; more pending bytes than that can never complete.
const UTF8_MAX_SEQUENCE_BYTES: usize = 4;

impl Utf8Decoder {
    /// Appends `bytes` and returns the text that is now complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(error) => {
                    let valid = error.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match error.error_len() {
                        // An incomplete sequence at the end: keep it for the next piece.
                        None if self.pending.len() - valid < UTF8_MAX_SEQUENCE_BYTES => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid bytes: replace them, as every lossy decoder does, and go on.
                        invalid => {
                            let skip = invalid.unwrap_or(1);
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + skip);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: any incomplete character left becomes a replacement character.
    pub(crate) fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

/// Withholds text that might be the start of a stop string, and reports when one appears.
#[derive(Debug)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What the matcher lets through after one push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StopScan {
    /// Text that is safe to send; generation goes on.
    Continue(String),
    /// A stop string appeared: the text before it, and generation ends.
    Stopped(String),
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|stop| !stop.is_empty()).collect();
        Self {
            stops,
            held: String::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> StopScan {
        if self.stops.is_empty() {
            return StopScan::Continue(text.to_owned());
        }
        self.held.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = earliest {
            let before = self.held[..at].to_owned();
            self.held.clear();
            return StopScan::Stopped(before);
        }
        // Keep back the longest suffix that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|stop| longest_suffix_prefix(&self.held, stop))
            .max()
            .unwrap_or(0);
        let release_to = self.held.len() - keep;
        let released = self.held[..release_to].to_owned();
        self.held.drain(..release_to);
        StopScan::Continue(released)
    }

    /// Ends the stream without a stop: whatever was held back was not a stop string after all.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of `stop`, cut on a
/// character boundary.
pub(crate) fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&len| {
            let start = text.len() - len;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_decoder_holds_split_characters_until_complete() {
        let mut decoder = Utf8Decoder::default();
        let snowman = "☃".as_bytes();
        assert_eq!(decoder.push(&snowman[..1]), "");
        assert_eq!(decoder.push(&snowman[1..2]), "");
        assert_eq!(decoder.push(&[snowman[2], b'a']), "☃a");
        assert_eq!(decoder.finish(), "");
    }

    #[test]
    fn utf8_decoder_replaces_invalid_bytes_and_continues() {
        let mut decoder = Utf8Decoder::default();
        assert_eq!(decoder.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        assert_eq!(decoder.push(&[0xe2, 0x98]), "");
        assert_eq!(decoder.finish(), "\u{fffd}");
    }

    #[test]
    fn stop_matcher_cuts_text_at_a_stop_split_across_pieces() {
        let mut matcher = StopMatcher::new(vec!["END".into()]);
        assert_eq!(matcher.push("hello E"), StopScan::Continue("hello ".into()));
        assert_eq!(matcher.push("N"), StopScan::Continue(String::new()));
        assert_eq!(matcher.push("D and more"), StopScan::Stopped(String::new()));
    }

    #[test]
    fn stop_matcher_releases_a_false_start() {
        let mut matcher = StopMatcher::new(vec!["END".into()]);
        assert_eq!(matcher.push("E"), StopScan::Continue(String::new()));
        assert_eq!(matcher.push("x"), StopScan::Continue("Ex".into()));
        assert_eq!(matcher.push("EN"), StopScan::Continue(String::new()));
        assert_eq!(matcher.finish(), "EN");
    }

    #[test]
    fn stop_matcher_picks_the_earliest_of_several_stops() {
        let mut matcher = StopMatcher::new(vec!["world".into(), "lo".into()]);
        assert_eq!(matcher.push("hello world"), StopScan::Stopped("hel".into()));
    }

    #[test]
    fn stop_matcher_respects_character_boundaries() {
        let mut matcher = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(matcher.push("caf"), StopScan::Continue("caf".into()));
        assert_eq!(matcher.push("é"), StopScan::Continue(String::new()));
        assert_eq!(matcher.push("?"), StopScan::Continue("é?".into()));
    }
}
