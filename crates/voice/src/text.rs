//! From text to what a Piper voice reads: sentences split into clauses at their punctuation
//! (espeak-ng phonemizes each clause), the clauses' phonemes joined with that punctuation as
//! Piper's own phonemizer does, and the phonemes turned into the voice's ids.

use std::collections::HashMap;

/// Longest clause handed to espeak-ng, in characters: a longer run without punctuation is cut
/// at a space, so that no synthesis unit grows without bound.
const MAX_CLAUSE_CHARS: usize = 300;

/// One clause: its text (without its punctuation) and the punctuation that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub text: String,
    pub punctuation: Option<char>,
}

/// `text` as sentences of clauses. A sentence ends at `.`, `!` or `?` followed by a space or
/// the end, or at a line break; a clause also at `,`, `;` or `:` so followed.
pub fn sentences(text: &str) -> Vec<Vec<Clause>> {
    let mut sentences = Vec::new();
    let mut clauses = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        let ch = chars[index];
        let next_is_break = chars.get(index + 1).is_none_or(|next| next.is_whitespace());
        let ends_sentence = matches!(ch, '.' | '!' | '?') && next_is_break;
        let ends_clause = matches!(ch, ',' | ';' | ':') && next_is_break;
        if ends_sentence || ends_clause {
            push_clause(&mut clauses, &current, Some(ch));
            current.clear();
            if ends_sentence && !clauses.is_empty() {
                sentences.push(std::mem::take(&mut clauses));
            }
        } else if ch == '\n' {
            push_clause(&mut clauses, &current, None);
            current.clear();
            if !clauses.is_empty() {
                sentences.push(std::mem::take(&mut clauses));
            }
        } else if ch.is_control() {
            current.push(' ');
        } else {
            current.push(ch);
            if current.chars().count() >= MAX_CLAUSE_CHARS && ch.is_whitespace() {
                push_clause(&mut clauses, &current, None);
                current.clear();
            }
        }
        index += 1;
    }
    push_clause(&mut clauses, &current, None);
    if !clauses.is_empty() {
        sentences.push(clauses);
    }
    sentences
}

fn push_clause(clauses: &mut Vec<Clause>, text: &str, punctuation: Option<char>) {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().any(char::is_alphanumeric) {
        clauses.push(Clause { text, punctuation });
    } else if let (Some(last), Some(mark)) = (clauses.last_mut(), punctuation) {
        // "Wait..." or "no!?": the mark belongs to the clause before.
        last.punctuation = Some(mark);
    }
}

/// A sentence's phonemes: each clause's, followed by its punctuation, joined by spaces (what
/// Piper's phonemizer makes of espeak-ng's clauses).
pub fn join_clauses(clauses: &[(String, Option<char>)]) -> String {
    let mut joined = String::new();
    for (index, (phonemes, punctuation)) in clauses.iter().enumerate() {
        if index > 0 {
            joined.push(' ');
        }
        joined.push_str(phonemes);
        if let Some(mark) = punctuation {
            joined.push(*mark);
        }
    }
    joined
}

/// A voice's map from phoneme (one character) to its ids.
#[derive(Debug, Clone)]
pub struct PhonemeIds {
    map: HashMap<char, Vec<i64>>,
    pad: i64,
    bos: i64,
    eos: i64,
}

impl PhonemeIds {
    /// From the voice's `phoneme_id_map`; it must name the pad (`_`), start (`^`) and end (`$`).
    pub fn new(map: &HashMap<String, Vec<i64>>) -> Result<Self, String> {
        let mut chars = HashMap::new();
        for (phoneme, ids) in map {
            let mut iter = phoneme.chars();
            if let (Some(ch), None) = (iter.next(), iter.next()) {
                chars.insert(ch, ids.clone());
            }
        }
        let single = |symbol: char| {
            chars
                .get(&symbol)
                .and_then(|ids| ids.first().copied())
                .ok_or_else(|| format!("the voice's phoneme map lacks {symbol:?}"))
        };
        Ok(Self {
            pad: single('_')?,
            bos: single('^')?,
            eos: single('$')?,
            map: chars,
        })
    }

    /// The ids of `phonemes`: start, then each known phoneme followed by the pad, then end
    /// (phonemes the voice does not know are skipped).
    pub fn ids(&self, phonemes: &str) -> Vec<i64> {
        let mut ids = vec![self.bos, self.pad];
        for phoneme in phonemes.chars() {
            if let Some(known) = self.map.get(&phoneme) {
                ids.extend_from_slice(known);
                ids.push(self.pad);
            }
        }
        ids.push(self.eos);
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(text: &str, punctuation: Option<char>) -> Clause {
        Clause {
            text: text.into(),
            punctuation,
        }
    }

    #[test]
    fn text_splits_into_sentences_and_clauses_at_punctuation() {
        let split = sentences("Hello world. How are you, today? I'm fine!\nNew line 3.5 times");
        assert_eq!(
            split,
            vec![
                vec![clause("Hello world", Some('.'))],
                vec![clause("How are you", Some(',')), clause("today", Some('?'))],
                vec![clause("I'm fine", Some('!'))],
                vec![clause("New line 3.5 times", None)],
            ]
        );
        assert_eq!(
            sentences("Wait... what?!"),
            vec![
                vec![clause("Wait..", Some('.'))],
                vec![clause("what?", Some('!'))]
            ]
        );
        assert!(sentences("  ... \n\n").is_empty());
        let long = "word ".repeat(200);
        let parts = sentences(&long);
        assert!(parts[0].len() > 1, "a long run is cut into clauses");
        assert!(
            parts[0]
                .iter()
                .all(|clause| clause.text.chars().count() <= MAX_CLAUSE_CHARS)
        );
    }

    #[test]
    fn phonemes_become_ids_with_the_pad_between_and_the_marks_around() {
        let map: HashMap<String, Vec<i64>> = [("_", 0), ("^", 1), ("$", 2), ("a", 14), (" ", 3)]
            .into_iter()
            .map(|(symbol, id)| (symbol.to_owned(), vec![id]))
            .collect();
        let ids = PhonemeIds::new(&map).expect("a map");
        assert_eq!(ids.ids("a a"), vec![1, 0, 14, 0, 3, 0, 14, 0, 2]);
        assert_eq!(ids.ids("ǂ"), vec![1, 0, 2], "unknown phonemes are skipped");
        assert_eq!(
            join_clauses(&[("həlˈoʊ".into(), Some(',')), ("wˈɜːld".into(), Some('.'))]),
            "həlˈoʊ, wˈɜːld."
        );
    }
}
