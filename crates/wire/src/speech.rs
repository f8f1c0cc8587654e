//! Speech: the request a client sends to `/audio/speech` (OpenAI's and Venice's shape), the one
//! a provider gets, and the voices a model has.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Most characters of text in one request (Venice's and OpenAI's limit).
pub const MAX_INPUT_CHARS: usize = 4096;
/// Slowest and fastest speed.
pub const MIN_SPEED: f32 = 0.25;
pub const MAX_SPEED: f32 = 4.0;
/// Formats the API names.
pub const FORMATS: [&str; 6] = ["mp3", "opus", "aac", "flac", "wav", "pcm"];
/// Voice names that OpenAI's and Venice's clients send by default; a model that has none of
/// them speaks them in its default voice rather than refusing every such client.
pub const PORTABLE_VOICES: [&str; 14] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
    "marin", "cedar", "af_sky",
];

/// A client's speech request, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRequest {
    pub model: String,
    pub input: String,
    pub voice: Option<String>,
    pub speed: f32,
    /// `None`: the model's default format.
    pub response_format: Option<String>,
    pub streaming: bool,
}

/// Fields beyond these (`language`, `prompt`, `temperature`, `top_p`, `instructions`) are
/// accepted and have no effect on the voices served here.
#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    model: Option<String>,
    input: String,
    #[serde(default)]
    voice: Option<String>,
    #[serde(default)]
    speed: Option<f64>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    streaming: Option<bool>,
    /// OpenAI's name for a streamed reply.
    #[serde(default)]
    stream_format: Option<String>,
}

impl SpeechRequest {
    /// Parses and checks a body; `default_model` when it names none (Venice's `tts-kokoro`
    /// default stands for whatever voice model the gateway serves).
    pub fn parse(body: &[u8], default_model: &str) -> Result<Self, ApiError> {
        let raw: RawRequest = serde_json::from_slice(body).map_err(|error| {
            let message = error.to_string();
            let param = [
                "input",
                "voice",
                "speed",
                "response_format",
                "streaming",
                "model",
            ]
            .into_iter()
            .find(|field| message.contains(&format!("`{field}`")))
            .unwrap_or("input");
            ApiError::invalid(param, format!("not a valid speech request: {message}"))
        })?;
        let characters = raw.input.chars().count();
        if raw.input.trim().is_empty() {
            return Err(ApiError::invalid(
                "input",
                "input is empty; give some text to speak",
            ));
        }
        if characters > MAX_INPUT_CHARS {
            return Err(ApiError::invalid(
                "input",
                format!("input is {characters} characters; at most {MAX_INPUT_CHARS} are allowed"),
            ));
        }
        if let Some(voice) = &raw.voice
            && (voice.is_empty() || voice.len() > 512)
        {
            return Err(ApiError::invalid("voice", "voice is 1 to 512 characters"));
        }
        let speed = raw.speed.unwrap_or(1.0);
        if !(f64::from(MIN_SPEED)..=f64::from(MAX_SPEED)).contains(&speed) {
            return Err(ApiError::invalid(
                "speed",
                format!("speed is from {MIN_SPEED} to {MAX_SPEED}, not {speed}"),
            ));
        }
        if let Some(format) = &raw.response_format
            && !FORMATS.contains(&format.as_str())
        {
            return Err(ApiError::invalid(
                "response_format",
                format!(
                    "response_format is one of {}, not {format:?}",
                    FORMATS.join(", ")
                ),
            ));
        }
        Ok(Self {
            model: raw
                .model
                .filter(|model| !model.trim().is_empty())
                .unwrap_or_else(|| default_model.to_owned()),
            input: raw.input,
            voice: raw.voice,
            speed: speed as f32,
            response_format: raw.response_format,
            streaming: raw.streaming.unwrap_or(false)
                || raw.stream_format.is_some_and(|format| format == "audio"),
        })
    }

    /// Characters of text: what speech is priced by.
    pub fn characters(&self) -> u64 {
        self.input.chars().count() as u64
    }
}

/// What the gateway sends a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderSpeechRequest {
    pub model: String,
    pub input: String,
    pub voice: String,
    pub speed: f32,
    pub response_format: String,
    pub streaming: bool,
}

/// One voice of a model, as `GET /audio/voices` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceEntry {
    pub id: String,
    pub object: String,
    /// The model it belongs to.
    pub model: String,
    /// Whether requests that name no voice (or a portable name) get this one.
    pub default: bool,
}

/// The voice `asked` (or none) stands for among a model's `voices` (its default first): the
/// voice itself, the default for none or a portable name, else `Err` with the voices there
/// are. A model that lists no voices takes any name, and `alloy` for none.
pub fn choose_voice(voices: &[String], asked: Option<&str>) -> Result<String, String> {
    let Some(default) = voices.first() else {
        return Ok(asked.unwrap_or("alloy").to_owned());
    };
    match asked {
        None => Ok(default.clone()),
        Some(name) if voices.iter().any(|voice| voice == name) => Ok(name.to_owned()),
        Some(name) if PORTABLE_VOICES.contains(&name) => Ok(default.clone()),
        Some(name) => Err(format!(
            "voice {name:?} is not one of this model's voices ({})",
            voices.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults_and_bad_fields_are_named() {
        let parsed = SpeechRequest::parse(br#"{"input":"Hello."}"#, "voice-model").expect("parsed");
        assert_eq!(parsed.model, "voice-model");
        assert_eq!(parsed.speed, 1.0);
        assert!(!parsed.streaming);
        assert_eq!(parsed.characters(), 6);
        let streamed = SpeechRequest::parse(
            br#"{"input":"Hi","model":"tts-1","voice":"alloy","stream_format":"audio","instructions":"calm"}"#,
            "m",
        )
        .expect("parsed");
        assert!(streamed.streaming);
        assert_eq!(streamed.model, "tts-1");
        let long = format!(r#"{{"input":"{}"}}"#, "a".repeat(MAX_INPUT_CHARS + 1));
        for (body, param) in [
            (r#"{"input":""}"#.to_owned(), "input"),
            (r#"{"input":"   "}"#.to_owned(), "input"),
            (long, "input"),
            (r#"{"input":"a","speed":5}"#.to_owned(), "speed"),
            (r#"{"input":"a","speed":0.1}"#.to_owned(), "speed"),
            (
                r#"{"input":"a","response_format":"ogg"}"#.to_owned(),
                "response_format",
            ),
            (r#"{"input":"a","voice":""}"#.to_owned(), "voice"),
            (r#"{"voice":"a"}"#.to_owned(), "input"),
        ] {
            let error = SpeechRequest::parse(body.as_bytes(), "m").expect_err(&body);
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn a_voice_is_the_one_named_the_default_for_portable_names_and_others_are_refused() {
        let voices = vec!["joe".to_owned(), "amy".to_owned()];
        assert_eq!(choose_voice(&voices, None).as_deref(), Ok("joe"));
        assert_eq!(choose_voice(&voices, Some("amy")).as_deref(), Ok("amy"));
        assert_eq!(choose_voice(&voices, Some("alloy")).as_deref(), Ok("joe"));
        assert!(choose_voice(&voices, Some("bob")).is_err());
        assert_eq!(choose_voice(&[], Some("bob")).as_deref(), Ok("bob"));
    }
}
