//! Video: Venice's asynchronous video API (`/video/quote`, `/video/queue`, `/video/retrieve`,
//! `/video/complete`) as clients send it, what a video model can do ([`VideoLimits`], in its
//! advert), and the provider protocol for jobs (queue, status, content, delete).

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest prompt, in characters (Venice's default limit).
pub const MAX_PROMPT_CHARS: usize = 2500;
/// Longest video asked for, in seconds (Venice's longest duration).
pub const MAX_SECONDS: u32 = 30;
/// Most bytes of one finished video a provider keeps and relays.
pub const MAX_VIDEO_BYTES: u64 = 512 * 1024 * 1024;
/// The resolutions Venice's clients name.
pub const RESOLUTIONS: [&str; 15] = [
    "256p",
    "360p",
    "480p",
    "540p",
    "580p",
    "720p",
    "1080p",
    "1440p",
    "2160p",
    "4k",
    "2x",
    "4x",
    "2K",
    "768P",
    "true_1080p",
];
/// The aspect ratios Venice's clients name.
pub const ASPECT_RATIOS: [&str; 13] = [
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "9:21", "16:9", "21:9", "adaptive",
    "auto",
];

/// What a video model makes, as its provider advertises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoLimits {
    /// Durations it makes, in seconds, shortest first.
    pub durations: Vec<u32>,
    /// Resolutions it makes (Venice's names), its default first.
    pub resolutions: Vec<String>,
}

impl Default for VideoLimits {
    fn default() -> Self {
        Self {
            durations: vec![4, 8, 12],
            resolutions: vec!["720p".into(), "480p".into()],
        }
    }
}

/// Fields of Venice's queue request that ask for media the gateway would have to fetch or
/// pass on; none is offered here.
const MEDIA_FIELDS: [&str; 10] = [
    "image_url",
    "end_image_url",
    "audio_url",
    "video_url",
    "reference_image_urls",
    "reference_video_urls",
    "reference_audio_urls",
    "reference_document_urls",
    "elements",
    "scene_image_urls",
];

/// A client's video request (`/video/queue`), parsed and checked against the API's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoRequest {
    pub model: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub seconds: u32,
    /// `None`: the model's default.
    pub resolution: Option<String>,
    pub aspect_ratio: Option<String>,
    pub audio: bool,
}

/// A client's quote request (`/video/quote`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteRequest {
    pub model: String,
    pub seconds: u32,
    pub resolution: Option<String>,
}

/// `"5s"` as 5, within 1 to [`MAX_SECONDS`].
fn seconds(duration: &str) -> Result<u32, ApiError> {
    duration
        .strip_suffix('s')
        .and_then(|number| number.parse::<u32>().ok())
        .filter(|seconds| (1..=MAX_SECONDS).contains(seconds))
        .ok_or_else(|| {
            ApiError::invalid(
                "duration",
                format!(
                    "duration is a length from 1s to {MAX_SECONDS}s, such as \"5s\", not {duration:?} (lengths taken from a source clip are not offered)"
                ),
            )
        })
}

fn one_of(
    value: Option<String>,
    allowed: &[&str],
    param: &str,
) -> Result<Option<String>, ApiError> {
    match value {
        Some(value) if !allowed.contains(&value.as_str()) => Err(ApiError::invalid(
            param,
            format!("{param} is one of {}, not {value:?}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(ApiError::invalid("model", "the body is a JSON object")),
        Err(error) => Err(ApiError::invalid(
            "model",
            format!("the body is not JSON: {error}"),
        )),
    }
}

fn text(
    fields: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<String>, ApiError> {
    match fields.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid(name, format!("{name} is a string"))),
    }
}

fn required(
    fields: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<String, ApiError> {
    text(fields, name)?
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| ApiError::invalid(name, format!("{name} is required")))
}

impl VideoRequest {
    /// Parses and checks a body of `/video/queue`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let fields = parse_object(body)?;
        let model = required(&fields, "model")?;
        let prompt = required(&fields, "prompt")?;
        let negative_prompt =
            text(&fields, "negative_prompt")?.filter(|text| !text.trim().is_empty());
        for (name, value) in [
            ("prompt", Some(&prompt)),
            ("negative_prompt", negative_prompt.as_ref()),
        ] {
            let characters = value.map_or(0, |value| value.chars().count());
            if characters > MAX_PROMPT_CHARS {
                return Err(ApiError::invalid(
                    name,
                    format!(
                        "{name} is {characters} characters; at most {MAX_PROMPT_CHARS} are allowed"
                    ),
                ));
            }
        }
        if let Some(field) = MEDIA_FIELDS.iter().find(|field| {
            fields
                .get(**field)
                .is_some_and(|value| !value.is_null() && value != &serde_json::json!([]))
        }) {
            return Err(ApiError::invalid(
                *field,
                format!(
                    "{field} is not offered here: the gateway passes no media to video engines; leave it out"
                ),
            ));
        }
        let audio = match fields.get("audio") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(audio)) => *audio,
            Some(_) => return Err(ApiError::invalid("audio", "audio is true or false")),
        };
        Ok(Self {
            model,
            prompt,
            negative_prompt: text(&fields, "negative_prompt")?
                .filter(|text| !text.trim().is_empty()),
            seconds: seconds(&required(&fields, "duration")?)?,
            resolution: one_of(text(&fields, "resolution")?, &RESOLUTIONS, "resolution")?,
            aspect_ratio: one_of(
                text(&fields, "aspect_ratio")?,
                &ASPECT_RATIOS,
                "aspect_ratio",
            )?,
            audio,
        })
    }

    /// Checks the request against what its model makes; the resolution to ask for.
    pub fn check_limits(&self, limits: &VideoLimits) -> Result<String, ApiError> {
        check_limits(self.seconds, self.resolution.as_deref(), limits)
    }
}

impl QuoteRequest {
    /// Parses and checks a body of `/video/quote`.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let fields = parse_object(body)?;
        Ok(Self {
            model: required(&fields, "model")?,
            seconds: seconds(&required(&fields, "duration")?)?,
            resolution: one_of(text(&fields, "resolution")?, &RESOLUTIONS, "resolution")?,
        })
    }
}

/// Checks a duration and resolution against a model's; the resolution to ask for.
pub fn check_limits(
    seconds: u32,
    resolution: Option<&str>,
    limits: &VideoLimits,
) -> Result<String, ApiError> {
    if !limits.durations.contains(&seconds) {
        return Err(ApiError::invalid(
            "duration",
            format!(
                "this model makes videos of {} seconds, not {seconds}",
                limits
                    .durations
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    match resolution {
        Some(resolution) if !limits.resolutions.iter().any(|known| known == resolution) => {
            Err(ApiError::invalid(
                "resolution",
                format!(
                    "this model makes {}, not {resolution}",
                    limits.resolutions.join(", ")
                ),
            ))
        }
        Some(resolution) => Ok(resolution.to_owned()),
        None => Ok(limits
            .resolutions
            .first()
            .cloned()
            .unwrap_or_else(|| "720p".to_owned())),
    }
}

/// The pixel size of a resolution and aspect ratio (`720p` at `16:9` is 1280 × 720; the
/// short side is the resolution's number, each side a multiple of 16).
pub fn frame_size(resolution: &str, aspect_ratio: Option<&str>) -> (u32, u32) {
    let short: u32 = match resolution {
        "4k" | "2160p" => 2160,
        "2K" | "1440p" => 1440,
        "true_1080p" | "1080p" => 1080,
        other => other.trim_end_matches(['p', 'P']).parse().unwrap_or(720),
    };
    let (wide, tall) = aspect_ratio
        .and_then(|ratio| ratio.split_once(':'))
        .and_then(|(wide, tall)| Some((wide.parse::<u32>().ok()?, tall.parse::<u32>().ok()?)))
        .filter(|(wide, tall)| *wide > 0 && *tall > 0)
        .unwrap_or((16, 9));
    let round = |side: u32| (side + 8) / 16 * 16;
    if wide >= tall {
        (round(short * wide / tall), round(short))
    } else {
        (round(short), round(short * tall / wide))
    }
}

/// `/video/retrieve`'s body.
#[derive(Debug, Clone, Deserialize)]
pub struct RetrieveRequest {
    pub model: String,
    pub queue_id: String,
    #[serde(default)]
    pub delete_media_on_completion: bool,
}

/// `/video/complete`'s body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub model: String,
    pub queue_id: String,
}

/// `/video/queue`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queued {
    pub model: String,
    pub queue_id: String,
}

/// `/video/retrieve`'s answer while the video is being made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Processing {
    /// `PROCESSING`.
    pub status: String,
    /// Milliseconds a job of this length usually takes on this provider.
    pub average_execution_time: u64,
    /// Milliseconds since the job was queued.
    pub execution_duration: u64,
    /// Percent done, as the engine says.
    pub progress: u8,
}

/// `/video/quote`'s answer: the price in dollars.
#[derive(Debug, Clone, Serialize)]
pub struct Quote {
    pub quote: crate::money::Amount,
}

/// `/video/complete`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completed {
    pub success: bool,
}

/// What the gateway asks a provider to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderVideoRequest {
    pub model: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    pub seconds: u32,
    pub resolution: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    pub audio: bool,
}

/// A provider's answer to a queued job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderJob {
    pub job_id: String,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Completed,
    Failed,
}

/// A provider's report on a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderJobStatus {
    pub state: JobState,
    pub progress: u8,
    /// Milliseconds since it was queued (until it finished, once it has).
    pub execution_ms: u64,
    /// Milliseconds this provider's finished jobs took on average.
    pub average_ms: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The finished video's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Whether `id` has the form of a job id (32 lower-case hex digits): what a provider takes
/// as a file name.
pub fn is_job_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<VideoRequest, ApiError> {
        VideoRequest::parse(body.to_string().as_bytes())
    }

    #[test]
    fn a_queue_request_takes_venices_fields() {
        let request = parse(serde_json::json!({
            "model": "wan", "prompt": "a fox runs", "duration": "8s", "resolution": "480p",
            "aspect_ratio": "9:16", "audio": false, "consents": {}
        }))
        .expect("parses");
        assert_eq!(request.seconds, 8);
        assert_eq!(request.resolution.as_deref(), Some("480p"));
        assert!(!request.audio);
        assert_eq!(
            request.check_limits(&VideoLimits::default()).expect("fits"),
            "480p"
        );
        let plain = parse(serde_json::json!({"model": "wan", "prompt": "a", "duration": "4s"}))
            .expect("parses");
        assert!(plain.audio, "audio is on unless turned off");
        assert_eq!(
            plain.check_limits(&VideoLimits::default()).expect("fits"),
            "720p"
        );
    }

    #[test]
    fn each_bound_is_refused_naming_its_field() {
        for (body, param) in [
            (
                serde_json::json!({"prompt": "a", "duration": "4s"}),
                "model",
            ),
            (
                serde_json::json!({"model": "m", "duration": "4s"}),
                "prompt",
            ),
            (serde_json::json!({"model": "m", "prompt": "a"}), "duration"),
            (
                serde_json::json!({"model": "m", "prompt": "a", "duration": "31s"}),
                "duration",
            ),
            (
                serde_json::json!({"model": "m", "prompt": "a", "duration": "auto"}),
                "duration",
            ),
            (
                serde_json::json!({"model": "m", "prompt": "a", "duration": "4s", "resolution": "9000p"}),
                "resolution",
            ),
            (
                serde_json::json!({"model": "m", "prompt": "a", "duration": "4s", "aspect_ratio": "7:3"}),
                "aspect_ratio",
            ),
            (
                serde_json::json!({"model": "m", "prompt": "a", "duration": "4s", "image_url": "https://x"}),
                "image_url",
            ),
            (
                serde_json::json!({"model": "m", "prompt": "x".repeat(MAX_PROMPT_CHARS + 1), "duration": "4s"}),
                "prompt",
            ),
            (
                serde_json::json!({"model": "m", "prompt": "a", "duration": "4s", "audio": "yes"}),
                "audio",
            ),
        ] {
            let error = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
        }
        let request = parse(serde_json::json!({"model": "m", "prompt": "a", "duration": "5s"}))
            .expect("parses");
        assert_eq!(
            request
                .check_limits(&VideoLimits::default())
                .expect_err("no 5s")
                .param
                .as_deref(),
            Some("duration")
        );
    }

    #[test]
    fn frame_sizes_follow_resolution_and_shape() {
        assert_eq!(frame_size("720p", None), (1280, 720));
        assert_eq!(frame_size("720p", Some("9:16")), (720, 1280));
        assert_eq!(frame_size("480p", Some("1:1")), (480, 480));
        assert_eq!(frame_size("1080p", Some("16:9")), (1920, 1088));
    }

    #[test]
    fn job_ids_are_32_hex_digits_and_nothing_else() {
        assert!(is_job_id(&"a1".repeat(16)));
        assert!(!is_job_id("../../etc/passwd"));
        assert!(!is_job_id(&"A1".repeat(16)));
        assert!(!is_job_id(&"a1".repeat(17)));
    }
}
