//! Phonemes from espeak-ng, run as a separate process (it is GPL-licensed; Gondola does not
//! link it). Clauses go in one per line, and espeak-ng reads each line apart and writes its
//! IPA on a line of its own; should it ever write a different number of lines, each clause
//! is asked for alone, so that a clause's phonemes never land on another's.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::VoiceError;

/// Longest espeak-ng may take for one request's text.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of phonemes read back (a clause's IPA is a few times its text).
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// The IPA of each of `clauses`, in order, in `language` (an espeak-ng voice such as
/// `en-us`); an empty string for a clause with no phonemes.
pub async fn phonemize(
    program: &Path,
    language: &str,
    clauses: &[&str],
) -> Result<Vec<String>, VoiceError> {
    if clauses.is_empty() {
        return Ok(Vec::new());
    }
    let lines = run(program, language, &clauses.join("\n")).await?;
    if lines.len() == clauses.len() {
        return Ok(lines);
    }
    let mut each = Vec::with_capacity(clauses.len());
    for clause in clauses {
        each.push(run(program, language, clause).await?.join(" "));
    }
    Ok(each)
}

/// One espeak-ng run over `text`, line by line: its output lines, cleaned.
async fn run(program: &Path, language: &str, text: &str) -> Result<Vec<String>, VoiceError> {
    let mut child = tokio::process::Command::new(program)
        .args(["-q", "--ipa", "-v", language])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            VoiceError::Phonemizer(format!("cannot run {}: {error}", program.display()))
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| VoiceError::Phonemizer("espeak-ng has no input".into()))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| VoiceError::Phonemizer("espeak-ng has no output".into()))?;
    let input = format!("{text}\n");
    let exchange = async {
        let writing = async {
            stdin.write_all(input.as_bytes()).await?;
            stdin.shutdown().await?;
            drop(stdin);
            Ok::<(), std::io::Error>(())
        };
        let mut output = Vec::new();
        let reading = async {
            (&mut stdout)
                .take(MAX_OUTPUT_BYTES as u64 + 1)
                .read_to_end(&mut output)
                .await
        };
        let (written, read) = tokio::join!(writing, reading);
        written?;
        read?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, output))
    };
    let (status, output) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| VoiceError::Phonemizer("espeak-ng took too long".into()))?
        .map_err(|error| VoiceError::Phonemizer(format!("espeak-ng failed: {error}")))?;
    if !status.success() {
        return Err(VoiceError::Phonemizer(format!(
            "espeak-ng exited with {status}"
        )));
    }
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(VoiceError::Phonemizer("espeak-ng wrote too much".into()));
    }
    Ok(String::from_utf8_lossy(&output)
        .lines()
        .map(clean)
        .filter(|line| !line.is_empty())
        .collect())
}

/// A line of espeak-ng's IPA without its language-switch marks (`(fr)…(en)`) and spacing.
fn clean(line: &str) -> String {
    let mut cleaned = String::with_capacity(line.len());
    let mut in_mark = false;
    for ch in line.chars() {
        match ch {
            '(' => in_mark = true,
            ')' if in_mark => in_mark = false,
            _ if in_mark => {}
            _ => cleaned.push(ch),
        }
    }
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_marks_and_extra_spaces_are_dropped() {
        assert_eq!(clean("  həlˈoʊ (fr)ʃɛ(en) wˈɜːld "), "həlˈoʊ ʃɛ wˈɜːld");
    }
}
