//! Transcription: the fields of a client's multipart upload to `/audio/transcriptions`
//! (OpenAI's and Venice's), the request a provider gets, the transcript it answers with, and
//! that transcript written in each response format (`json`, `text`, `srt`, `vtt`,
//! `verbose_json`).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Largest upload (OpenAI's limit).
pub const MAX_UPLOAD_BYTES: usize = 25 * 1024 * 1024;
/// The response formats.
pub const FORMATS: [&str; 5] = ["json", "text", "srt", "vtt", "verbose_json"];
/// Fewest bytes a second of audio takes in any codec a client would send (a 2.4 kbps
/// speech codec): an upload of `n` bytes holds at most `n / 300` seconds.
pub const MIN_BYTES_PER_SECOND: usize = 300;

/// One part of a multipart body: its name, its file name if it is a file, its bytes.
pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
}

/// A client's transcription request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionRequest {
    pub model: String,
    pub audio: Vec<u8>,
    pub language: Option<String>,
    pub response_format: String,
    /// Word timings asked for (`timestamp_granularities[]=word`, or Venice's `timestamps`).
    pub words: bool,
    /// Segment timings asked for (`verbose_json`, `srt`, `vtt`, or Venice's `timestamps`).
    pub segments: bool,
    /// Venice's `timestamps=true`: the timings go in a `json` answer's `timestamps`.
    pub venice_timestamps: bool,
}

impl TranscriptionRequest {
    /// Reads the parts of the upload; `default_model` when it names none. `prompt` and
    /// `temperature` are accepted and have no effect.
    pub fn from_parts(parts: Vec<Part>, default_model: &str) -> Result<Self, ApiError> {
        let mut audio = None;
        let mut model = None;
        let mut language = None;
        let mut response_format = None;
        let mut granularities = Vec::new();
        let mut venice_timestamps = false;
        let text = |part: &Part| {
            std::str::from_utf8(&part.bytes)
                .map(|text| text.trim().to_owned())
                .map_err(|_| {
                    ApiError::invalid(part.name.clone(), format!("{} is not text", part.name))
                })
        };
        for part in parts {
            match part.name.as_str() {
                "file" => {
                    if audio.is_some() {
                        return Err(ApiError::invalid("file", "give one file"));
                    }
                    audio = Some(part.bytes);
                }
                "model" => model = Some(text(&part)?),
                "language" => language = Some(text(&part)?).filter(|language| !language.is_empty()),
                "response_format" => response_format = Some(text(&part)?),
                "timestamp_granularities[]" | "timestamp_granularities" => {
                    granularities.push(text(&part)?);
                }
                "timestamps" => venice_timestamps = text(&part)? == "true",
                _ => {}
            }
        }
        let audio = audio.ok_or_else(|| {
            ApiError::invalid("file", "the audio goes in a multipart part named `file`")
        })?;
        if audio.is_empty() {
            return Err(ApiError::invalid("file", "the file is empty"));
        }
        if audio.len() > MAX_UPLOAD_BYTES {
            return Err(ApiError::invalid(
                "file",
                format!(
                    "the file is {} bytes; at most {MAX_UPLOAD_BYTES} are taken",
                    audio.len()
                ),
            ));
        }
        let response_format = response_format.unwrap_or_else(|| "json".to_owned());
        if !FORMATS.contains(&response_format.as_str()) {
            return Err(ApiError::invalid(
                "response_format",
                format!(
                    "response_format is one of {}, not {response_format:?}",
                    FORMATS.join(", ")
                ),
            ));
        }
        if let Some(language) = &language
            && !(2..=3).contains(&language.len())
        {
            return Err(ApiError::invalid(
                "language",
                format!("language is an ISO 639-1 code such as \"en\", not {language:?}"),
            ));
        }
        let mut words = false;
        for granularity in &granularities {
            match granularity.as_str() {
                "segment" => {}
                "word" => words = true,
                other => {
                    return Err(ApiError::invalid(
                        "timestamp_granularities[]",
                        format!("the timestamp granularity is word or segment, not {other:?}"),
                    ));
                }
            }
        }
        // Word timings are shown in `verbose_json` and in Venice's `timestamps`; elsewhere
        // they are not worked out.
        let words = venice_timestamps || (words && response_format == "verbose_json");
        let segments =
            venice_timestamps || matches!(response_format.as_str(), "verbose_json" | "srt" | "vtt");
        Ok(Self {
            model: model
                .filter(|model| !model.is_empty())
                .unwrap_or_else(|| default_model.to_owned()),
            audio,
            language,
            response_format,
            words,
            segments,
            venice_timestamps,
        })
    }

    /// The most seconds of audio the upload can hold (what it is reserved for), at most
    /// `max_seconds`.
    pub fn max_seconds(&self, max_seconds: u64) -> u64 {
        ((self.audio.len() / MIN_BYTES_PER_SECOND + 1) as u64).min(max_seconds)
    }
}

/// What the gateway sends a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderTranscriptionRequest {
    pub model: String,
    /// The upload, base64.
    pub audio: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Segment timings wanted.
    pub timed: bool,
    /// Word timings wanted (segments too, then).
    #[serde(default)]
    pub words: bool,
}

impl ProviderTranscriptionRequest {
    pub fn new(request: &TranscriptionRequest, model: String) -> Self {
        Self {
            model,
            audio: base64::engine::general_purpose::STANDARD.encode(&request.audio),
            language: request.language.clone(),
            timed: request.words || request.segments,
            words: request.words,
        }
    }

    pub fn audio_bytes(&self) -> Result<Vec<u8>, ApiError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.audio)
            .map_err(|_| ApiError::invalid("file", "the audio is not base64"))
    }
}

/// A stretch of the transcript and its times, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedText {
    pub text: String,
    pub start: f32,
    pub end: f32,
}

/// A word and its times, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedWord {
    pub word: String,
    pub start: f32,
    pub end: f32,
}

/// What a provider answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub text: String,
    pub language: String,
    /// Seconds of audio heard: what the request is charged for.
    pub duration: f32,
    #[serde(default)]
    pub segments: Vec<TimedText>,
    #[serde(default)]
    pub words: Vec<TimedWord>,
}

impl Transcript {
    /// The answer's body and content type, in the request's format.
    pub fn render(&self, request: &TranscriptionRequest) -> (Vec<u8>, &'static str) {
        match request.response_format.as_str() {
            "text" => (
                format!("{}\n", self.text).into_bytes(),
                "text/plain; charset=utf-8",
            ),
            "srt" => (self.subtitles(false).into_bytes(), "application/x-subrip"),
            "vtt" => (self.subtitles(true).into_bytes(), "text/vtt"),
            "verbose_json" => {
                let mut body = serde_json::json!({
                    "task": "transcribe",
                    "language": language_name(&self.language),
                    "duration": self.duration,
                    "text": self.text,
                    "segments": self.segments.iter().enumerate().map(|(id, segment)| serde_json::json!({
                        "id": id,
                        "start": segment.start,
                        "end": segment.end,
                        "text": segment.text,
                    })).collect::<Vec<_>>(),
                });
                if request.words {
                    body["words"] = serde_json::to_value(&self.words).unwrap_or_default();
                }
                (
                    serde_json::to_vec(&body).unwrap_or_default(),
                    "application/json",
                )
            }
            _ => {
                let mut body = serde_json::json!({ "text": self.text });
                if request.venice_timestamps {
                    body["duration"] = self.duration.into();
                    body["timestamps"] = serde_json::json!({
                        "word": self.words,
                        "segment": self.segments,
                    });
                }
                (
                    serde_json::to_vec(&body).unwrap_or_default(),
                    "application/json",
                )
            }
        }
    }

    /// The segments as SubRip (`vtt`: WebVTT) cues.
    fn subtitles(&self, vtt: bool) -> String {
        let mut out = String::new();
        if vtt {
            out.push_str("WEBVTT\n\n");
        }
        for (index, segment) in self.segments.iter().enumerate() {
            if !vtt {
                out.push_str(&format!("{}\n", index + 1));
            }
            out.push_str(&format!(
                "{} --> {}\n{}\n\n",
                clock(segment.start, vtt),
                clock(segment.end, vtt),
                segment.text.trim()
            ));
        }
        out
    }
}

/// `seconds` as `HH:MM:SS,mmm` (SubRip) or `HH:MM:SS.mmm` (WebVTT).
fn clock(seconds: f32, vtt: bool) -> String {
    let millis = (f64::from(seconds.max(0.0)) * 1000.0).round() as u64;
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    let separator = if vtt { '.' } else { ',' };
    format!("{hours:02}:{minutes:02}:{secs:02}{separator}{millis:03}")
}

/// ISO 639-1 codes and the English names OpenAI's `verbose_json` gives languages by.
const LANGUAGE_NAMES: [(&str, &str); 9] = [
    ("en", "english"),
    ("de", "german"),
    ("es", "spanish"),
    ("fr", "french"),
    ("it", "italian"),
    ("pt", "portuguese"),
    ("nl", "dutch"),
    ("ja", "japanese"),
    ("zh", "chinese"),
];

/// OpenAI's `verbose_json` names the language in English ("english").
fn language_name(code: &str) -> String {
    LANGUAGE_NAMES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or(code, |(_, name)| name)
        .to_owned()
}

/// The ISO 639-1 code of a language an engine named in English, or by its code.
pub fn language_code(name: &str) -> String {
    let name = name.trim().to_lowercase();
    LANGUAGE_NAMES
        .iter()
        .find(|(_, known)| *known == name)
        .map_or(name.clone(), |(code, _)| (*code).to_owned())
}

/// The file extension of audio in `bytes`, by its first bytes (an engine reads the format
/// from the upload's name); `bin` when unknown.
pub fn audio_extension(bytes: &[u8]) -> &'static str {
    match bytes {
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'A',
            b'V',
            b'E',
            ..,
        ] => "wav",
        [b'f', b'L', b'a', b'C', ..] => "flac",
        [b'O', b'g', b'g', b'S', ..] => "ogg",
        [0x1a, 0x45, 0xdf, 0xa3, ..] => "webm",
        [b'I', b'D', b'3', ..] => "mp3",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "m4a",
        [0xff, second, ..] if second & 0xf6 == 0xf0 => "aac",
        [0xff, second, ..] if second & 0xe0 == 0xe0 => "mp3",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, bytes: &[u8]) -> Part {
        Part {
            name: name.into(),
            file_name: None,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn uploads_parse_and_bad_ones_name_the_part() {
        let request = TranscriptionRequest::from_parts(
            vec![
                part("file", b"RIFF...."),
                part("model", b"whisper-1"),
                part("response_format", b"verbose_json"),
                part("timestamp_granularities[]", b"segment"),
            ],
            "m",
        )
        .expect("parsed");
        assert_eq!(request.model, "whisper-1");
        assert!(request.segments);
        assert_eq!(request.max_seconds(600), 1);
        let venice = TranscriptionRequest::from_parts(
            vec![part("file", b"x"), part("timestamps", b"true")],
            "m",
        )
        .expect("parsed");
        assert!(venice.venice_timestamps && venice.segments);
        assert_eq!(venice.model, "m");
        assert!(venice.words, "Venice's timestamps hold words");
        let words_unshown = TranscriptionRequest::from_parts(
            vec![
                part("file", b"x"),
                part("timestamp_granularities[]", b"word"),
            ],
            "m",
        )
        .expect("parsed");
        assert!(!words_unshown.words && !words_unshown.segments);
        for (parts, param) in [
            (vec![part("model", b"m")], "file"),
            (vec![part("file", b"")], "file"),
            (
                vec![part("file", b"x"), part("response_format", b"mp3")],
                "response_format",
            ),
            (
                vec![part("file", b"x"), part("language", b"english")],
                "language",
            ),
            (
                vec![
                    part("file", b"x"),
                    part("timestamp_granularities[]", b"char"),
                ],
                "timestamp_granularities[]",
            ),
        ] {
            let error = TranscriptionRequest::from_parts(parts, "m").expect_err(param);
            assert_eq!(error.param.as_deref(), Some(param));
        }
    }

    #[test]
    fn a_transcript_renders_in_every_format() {
        let transcript = Transcript {
            text: "Hello there. Bye.".into(),
            language: "en".into(),
            duration: 3.5,
            segments: vec![
                TimedText {
                    text: "Hello there.".into(),
                    start: 0.0,
                    end: 1.25,
                },
                TimedText {
                    text: "Bye.".into(),
                    start: 61.5,
                    end: 3723.5,
                },
            ],
            words: vec![TimedWord {
                word: "Hello".into(),
                start: 0.0,
                end: 0.5,
            }],
        };
        let request = |format: &str| TranscriptionRequest {
            model: "m".into(),
            audio: vec![1],
            language: None,
            response_format: format.into(),
            words: true,
            segments: true,
            venice_timestamps: false,
        };
        let (srt, _) = transcript.render(&request("srt"));
        assert_eq!(
            String::from_utf8(srt).expect("text"),
            "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n2\n00:01:01,500 --> 01:02:03,500\nBye.\n\n"
        );
        let (vtt, kind) = transcript.render(&request("vtt"));
        assert!(
            String::from_utf8(vtt)
                .expect("text")
                .starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\n")
        );
        assert_eq!(kind, "text/vtt");
        let (verbose, _) = transcript.render(&request("verbose_json"));
        let verbose: serde_json::Value = serde_json::from_slice(&verbose).expect("json");
        assert_eq!(verbose["language"], "english");
        assert_eq!(verbose["segments"][1]["id"], 1);
        assert_eq!(verbose["words"][0]["word"], "Hello");
        let (text, _) = transcript.render(&request("text"));
        assert_eq!(text, b"Hello there. Bye.\n");
    }

    #[test]
    fn audio_is_named_by_its_first_bytes_and_languages_by_their_codes() {
        assert_eq!(audio_extension(b"RIFF\x24\x00\x00\x00WAVEfmt "), "wav");
        assert_eq!(audio_extension(b"fLaC\x00"), "flac");
        assert_eq!(audio_extension(b"OggS\x00"), "ogg");
        assert_eq!(audio_extension(&[0x1a, 0x45, 0xdf, 0xa3, 0x01]), "webm");
        assert_eq!(audio_extension(b"ID3\x04"), "mp3");
        assert_eq!(audio_extension(&[0xff, 0xfb, 0x90, 0x00]), "mp3");
        assert_eq!(audio_extension(&[0xff, 0xf1, 0x50, 0x80]), "aac");
        assert_eq!(audio_extension(b"\x00\x00\x00\x20ftypM4A "), "m4a");
        assert_eq!(audio_extension(b"not audio"), "bin");
        assert_eq!(audio_extension(b""), "bin");
        assert_eq!(language_code("english"), "en");
        assert_eq!(language_code("English "), "en");
        assert_eq!(language_code("fr"), "fr");
        assert_eq!(language_name(&language_code("german")), "german");
    }
}
