//! Removing `<think>…</think>` reasoning from streamed text (`strip_thinking_response`), with
//! tags that may be split across chunks.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Streams text through, dropping everything between `<think>` and `</think>`.
#[derive(Debug, Default)]
pub struct ThinkingFilter {
    inside: bool,
    held: String,
}

impl ThinkingFilter {
    /// Feeds a chunk; returns the visible text it completes.
    pub fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        let mut visible = String::new();
        loop {
            let tag = if self.inside { CLOSE } else { OPEN };
            if let Some(at) = self.held.find(tag) {
                if !self.inside {
                    visible.push_str(&self.held[..at]);
                }
                self.held.drain(..at + tag.len());
                self.inside = !self.inside;
                continue;
            }
            // Keep back a possible partial tag at the end.
            let keep = (1..tag.len())
                .rev()
                .find(|&len| {
                    self.held.len() >= len
                        && self.held.is_char_boundary(self.held.len() - len)
                        && tag.starts_with(&self.held[self.held.len() - len..])
                })
                .unwrap_or(0);
            let release = self.held.len() - keep;
            if !self.inside {
                visible.push_str(&self.held[..release]);
            }
            self.held.drain(..release);
            return visible;
        }
    }

    /// Ends the stream: a held partial tag was just text (unless inside reasoning).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        if self.inside { String::new() } else { rest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_is_removed_across_any_split() {
        let text = "<think>plan: be nice</think>Hello <b>world</b>";
        for split in 0..text.len() {
            if !text.is_char_boundary(split) {
                continue;
            }
            let mut filter = ThinkingFilter::default();
            let mut out = filter.push(&text[..split]);
            out.push_str(&filter.push(&text[split..]));
            out.push_str(&filter.finish());
            assert_eq!(out, "Hello <b>world</b>", "split at {split}");
        }
    }

    #[test]
    fn text_without_reasoning_passes_unchanged() {
        let mut filter = ThinkingFilter::default();
        assert_eq!(filter.push("a < b <th"), "a < b ");
        assert_eq!(filter.push("ree"), "<three");
        assert_eq!(filter.finish(), "");
    }
}
