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

/// The log-probability of token `chosen` under `logits` (a log-softmax), and the `top`
/// likeliest tokens with theirs, likeliest first. O(vocabulary × log top).
pub(crate) fn logprobs(logits: &[f32], chosen: i32, top: usize) -> (f32, Vec<(i32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits
        .iter()
        .map(|logit| f64::from(logit - max).exp())
        .sum();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a log-sum of f32 logits fits an f32"
    )]
    let log_sum = max + sum.ln() as f32;
    let logprob = |index: usize| {
        logits
            .get(index)
            .map_or(f32::NEG_INFINITY, |logit| logit - log_sum)
    };
    // A min-heap of the best `top` seen so far, by logit.
    let mut best: std::collections::BinaryHeap<std::cmp::Reverse<(OrderedLogit, usize)>> =
        std::collections::BinaryHeap::with_capacity(top + 1);
    if top > 0 {
        for (index, logit) in logits.iter().enumerate() {
            best.push(std::cmp::Reverse((OrderedLogit(*logit), index)));
            if best.len() > top {
                best.pop();
            }
        }
    }
    let mut likeliest: Vec<(i32, f32)> = best
        .into_iter()
        .map(|std::cmp::Reverse((_, index))| {
            (i32::try_from(index).unwrap_or(i32::MAX), logprob(index))
        })
        .collect();
    likeliest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    (
        logprob(usize::try_from(chosen).unwrap_or(usize::MAX)),
        likeliest,
    )
}

/// A logit with a total order (logits are finite; a NaN sorts as the least).
#[derive(Clone, Copy, Debug, PartialEq)]
struct OrderedLogit(f32);

impl Eq for OrderedLogit {}

impl PartialOrd for OrderedLogit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedLogit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax_and_the_top_come_likeliest_first() {
        let logits = [1.0_f32, 3.0, 2.0, 3.0, -5.0];
        let (chosen, top) = logprobs(&logits, 2, 3);
        let total: f32 = logits.iter().map(|logit| logit.exp()).sum();
        assert!(
            (chosen - (2.0_f32.exp() / total).ln()).abs() < 1e-5,
            "{chosen}"
        );
        // Ties keep the lower token id first.
        assert_eq!(
            top.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        assert!((top[0].1 - top[1].1).abs() < 1e-6);
        assert!(top[0].1 > top[2].1);
        let probabilities: f32 = logits
            .iter()
            .enumerate()
            .map(|(index, _)| logprobs(&logits, index as i32, 0).0.exp())
            .sum();
        assert!((probabilities - 1.0).abs() < 1e-5);
        assert!(logprobs(&logits, 1, 0).1.is_empty());
    }

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
