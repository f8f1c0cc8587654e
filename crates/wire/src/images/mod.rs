//! Images: the requests a client sends to Venice's `/image/generate` and OpenAI's
//! `/images/generations` (parsed into one [`ImageRequest`]), the request a provider gets and
//! its answer, what an image model can do ([`ImageLimits`], in its advert), the formats, and
//! the style presets (`/image/styles`).

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

mod styles;
#[cfg(test)]
mod tests;

pub use styles::{STYLES, Style, style};

/// Longest prompt on Venice's route, in characters (its schema's `maxLength`).
pub const MAX_PROMPT_CHARS: usize = 7500;
/// Longest prompt on OpenAI's route, in characters (Venice's schema for it).
pub const MAX_OPENAI_PROMPT_CHARS: usize = 1500;
/// Widest and tallest image asked for by width and height (Venice's schema's maximum).
pub const MAX_SIDE: u32 = 1280;
/// Most images in one request.
pub const MAX_VARIANTS: u32 = 4;
/// Largest seed either way (Venice's schema).
pub const MAX_SEED: i64 = 999_999_999;
/// Largest `cfg_scale` (Venice's schema; it must be above 0).
pub const MAX_CFG_SCALE: f32 = 20.0;
/// Most bytes of one generated image, as the gateway accepts it from a provider: a 1280 ×
/// 1280 RGBA image stored without compression is 6.5 MB.
pub const MAX_IMAGE_BYTES: usize = 8 * 1024 * 1024;

/// An image's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    fn parse(text: &str, param: &str) -> Result<Self, ApiError> {
        match text {
            "jpeg" | "jpg" => Ok(Self::Jpeg),
            "png" => Ok(Self::Png),
            "webp" => Ok(Self::Webp),
            other => Err(ApiError::invalid(
                param,
                format!("{param} is jpeg, png or webp, not {other:?}"),
            )),
        }
    }

    /// The format `bytes` are in, by their signature.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }
}

/// What an image model takes, as its provider advertises it (Venice's image model
/// constraints in `/models`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Width and height must be multiples of this.
    pub divisor: u32,
    pub default_steps: u32,
    pub max_steps: u32,
    /// Edits an image from a prompt (`/image/edit`). Absent in an older advert: no.
    #[serde(default)]
    pub edits: bool,
}

impl Default for ImageLimits {
    /// A Stable Diffusion model's: sizes in multiples of 8 up to Venice's 1280, 20 steps by
    /// default and at most 50.
    fn default() -> Self {
        Self {
            max_width: MAX_SIDE,
            max_height: MAX_SIDE,
            divisor: 8,
            default_steps: 20,
            max_steps: 50,
            edits: false,
        }
    }
}

/// How the answer is written: Venice's shape or OpenAI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `{id, images: [base64], timing}`, or the image's bytes when `binary`.
    Venice { binary: bool },
    /// `{created, data: [{b64_json}]}`, or `[{url}]` with a `data:` URL when `data_url`.
    OpenAi { data_url: bool },
}

/// A client's image request, from either route, parsed and checked against the API's own
/// bounds (the model's are [`ImageRequest::check_limits`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    pub model: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    /// `None`: the model's default size (its largest square up to 1024).
    pub size: Option<(u32, u32)>,
    /// `None`: the model's default.
    pub steps: Option<u32>,
    pub cfg_scale: Option<f32>,
    /// `None`: one is drawn for the request.
    pub seed: Option<i64>,
    pub style_preset: Option<String>,
    pub format: ImageFormat,
    pub variants: u32,
    /// Accepted; Gondola never blurs or filters an image.
    pub safe_mode: bool,
    pub answer: Answer,
    /// OpenAI's route scales a size beyond the model's to fit it (OpenAI's sizes reach
    /// 1792); Venice's refuses it.
    pub fit_size: bool,
}

/// Venice's `/image/generate` body; a field beside these is refused, as Venice's schema has it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VeniceBody {
    model: Option<String>,
    prompt: String,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    width: Option<i64>,
    #[serde(default)]
    height: Option<i64>,
    #[serde(default)]
    steps: Option<i64>,
    #[serde(default)]
    cfg_scale: Option<f64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    style_preset: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    return_binary: Option<bool>,
    #[serde(default)]
    variants: Option<i64>,
    #[serde(default)]
    safe_mode: Option<bool>,
    #[serde(default)]
    hide_watermark: Option<bool>,
    #[serde(default)]
    embed_exif_metadata: Option<bool>,
    #[serde(default)]
    lora_strength: Option<i64>,
    #[serde(default)]
    aspect_ratio: Option<String>,
    #[serde(default)]
    resolution: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    enable_web_search: Option<bool>,
    #[serde(default)]
    disable_prompt_optimization_thinking: Option<bool>,
    #[serde(default)]
    enhance_prompt: Option<bool>,
    #[serde(default)]
    inpaint: Option<serde_json::Value>,
    #[serde(default)]
    style_references: Option<Vec<serde_json::Value>>,
}

/// OpenAI's `/images/generations` body, as Venice's schema has it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenAiBody {
    #[serde(default)]
    model: Option<String>,
    prompt: String,
    #[serde(default)]
    n: Option<i64>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    #[serde(default)]
    output_format: Option<String>,
    #[serde(default)]
    moderation: Option<String>,
    #[serde(default)]
    background: Option<String>,
    #[serde(default)]
    output_compression: Option<i64>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    style: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// A body that failed to parse, as an error naming the field it failed at.
fn body_error(error: &serde_path_to_error::Error<serde_json::Error>, what: &str) -> ApiError {
    let path = error.path().to_string();
    let message = error.inner().to_string();
    let param = if path == "." {
        message
            .split('`')
            .nth(1)
            .map_or_else(|| "prompt".to_owned(), str::to_owned)
    } else {
        path
    };
    ApiError::invalid(param, format!("not a valid {what}: {message}"))
}

fn prompt_checked(prompt: String, limit: usize, param: &str) -> Result<String, ApiError> {
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid(
            param,
            format!("{param} is empty; describe the image"),
        ));
    }
    let characters = prompt.chars().count();
    if characters > limit {
        return Err(ApiError::invalid(
            param,
            format!("{param} is {characters} characters; at most {limit} are allowed"),
        ));
    }
    Ok(prompt)
}

fn side(value: i64, param: &str) -> Result<u32, ApiError> {
    u32::try_from(value)
        .ok()
        .filter(|side| (1..=MAX_SIDE).contains(side))
        .ok_or_else(|| {
            ApiError::invalid(
                param,
                format!("{param} is from 1 to {MAX_SIDE} pixels, not {value}"),
            )
        })
}

fn refuse_feature(present: bool, param: &str, what: &str) -> Result<(), ApiError> {
    if present {
        Err(ApiError::invalid(
            param,
            format!("{what} is not offered by this gateway; leave {param} out"),
        ))
    } else {
        Ok(())
    }
}

impl ImageRequest {
    /// Parses and checks a body of Venice's `/image/generate`; `default_model` when it names
    /// none.
    pub fn parse_venice(body: &[u8], default_model: &str) -> Result<Self, ApiError> {
        let raw: VeniceBody =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
                .map_err(|error| body_error(&error, "image request"))?;
        let prompt = prompt_checked(raw.prompt, MAX_PROMPT_CHARS, "prompt")?;
        let negative_prompt = raw
            .negative_prompt
            .filter(|text| !text.trim().is_empty())
            .map(|text| {
                let characters = text.chars().count();
                if characters > MAX_PROMPT_CHARS {
                    Err(ApiError::invalid(
                        "negative_prompt",
                        format!(
                            "negative_prompt is {characters} characters; at most {MAX_PROMPT_CHARS} are allowed"
                        ),
                    ))
                } else {
                    Ok(text)
                }
            })
            .transpose()?;
        let size = match (raw.width, raw.height) {
            (None, None) => None,
            (width, height) => Some((
                side(width.unwrap_or(1024), "width")?,
                side(height.unwrap_or(1024), "height")?,
            )),
        };
        let steps = raw
            .steps
            .map(|steps| {
                u32::try_from(steps)
                    .ok()
                    .filter(|steps| *steps >= 1)
                    .ok_or_else(|| {
                        ApiError::invalid("steps", format!("steps is at least 1, not {steps}"))
                    })
            })
            .transpose()?;
        let cfg_scale = raw
            .cfg_scale
            .map(|scale| {
                if scale > 0.0 && scale <= f64::from(MAX_CFG_SCALE) {
                    Ok(scale as f32)
                } else {
                    Err(ApiError::invalid(
                        "cfg_scale",
                        format!("cfg_scale is above 0 and at most {MAX_CFG_SCALE}, not {scale}"),
                    ))
                }
            })
            .transpose()?;
        let seed = raw
            .seed
            .map(|seed| {
                if (-MAX_SEED..=MAX_SEED).contains(&seed) {
                    Ok(seed)
                } else {
                    Err(ApiError::invalid(
                        "seed",
                        format!("seed is from -{MAX_SEED} to {MAX_SEED}, not {seed}"),
                    ))
                }
            })
            .transpose()?
            // Venice's default is 0, which stands for "draw one".
            .filter(|seed| *seed != 0);
        let binary = raw.return_binary.unwrap_or(false);
        let variants = match raw.variants {
            None => 1,
            Some(count) => u32::try_from(count)
                .ok()
                .filter(|count| (1..=MAX_VARIANTS).contains(count))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "variants",
                        format!("variants is from 1 to {MAX_VARIANTS}, not {count}"),
                    )
                })?,
        };
        if binary && variants > 1 {
            return Err(ApiError::invalid(
                "variants",
                "return_binary answers with one image: ask for one variant, or for base64",
            ));
        }
        if let Some(strength) = raw.lora_strength
            && !(0..=100).contains(&strength)
        {
            return Err(ApiError::invalid(
                "lora_strength",
                format!("lora_strength is from 0 to 100, not {strength}"),
            ));
        }
        refuse_feature(
            raw.style_references
                .as_ref()
                .is_some_and(|references| !references.is_empty()),
            "style_references",
            "Guiding an image by reference images",
        )?;
        refuse_feature(
            raw.enable_web_search == Some(true),
            "enable_web_search",
            "Web search",
        )?;
        refuse_feature(
            raw.enhance_prompt == Some(true),
            "enhance_prompt",
            "Rewriting the prompt",
        )?;
        refuse_feature(
            raw.inpaint.as_ref().is_some_and(|value| !value.is_null()),
            "inpaint",
            "In-painting",
        )?;
        // Accepted and without effect on the engines served here: the watermark (there is
        // none), EXIF metadata (never written), prompt-optimisation thinking, and the
        // aspect ratio, resolution and quality of models that take them instead of a size.
        let _ = (
            raw.hide_watermark,
            raw.embed_exif_metadata,
            raw.disable_prompt_optimization_thinking,
            raw.aspect_ratio,
            raw.resolution,
            raw.quality,
        );
        Ok(Self {
            model: raw
                .model
                .filter(|model| !model.trim().is_empty())
                .unwrap_or_else(|| default_model.to_owned()),
            prompt,
            negative_prompt,
            size,
            steps,
            cfg_scale,
            seed,
            style_preset: raw.style_preset.filter(|style| !style.is_empty()),
            format: raw
                .format
                .as_deref()
                .map(|format| ImageFormat::parse(format, "format"))
                .transpose()?
                .unwrap_or(ImageFormat::Webp),
            variants,
            safe_mode: raw.safe_mode.unwrap_or(false),
            answer: Answer::Venice { binary },
            fit_size: false,
        })
    }

    /// Parses and checks a body of OpenAI's `/images/generations`; `default_model` when it
    /// names none.
    pub fn parse_openai(body: &[u8], default_model: &str) -> Result<Self, ApiError> {
        let raw: OpenAiBody =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
                .map_err(|error| body_error(&error, "image request"))?;
        let prompt = prompt_checked(raw.prompt, MAX_OPENAI_PROMPT_CHARS, "prompt")?;
        let variants = match raw.n {
            None => 1,
            Some(count) => u32::try_from(count)
                .ok()
                .filter(|count| (1..=MAX_VARIANTS).contains(count))
                .ok_or_else(|| {
                    ApiError::invalid("n", format!("n is from 1 to {MAX_VARIANTS}, not {count}"))
                })?,
        };
        let size = match raw.size.as_deref() {
            None | Some("auto") => None,
            Some(text) => Some(parse_size(text)?),
        };
        let data_url = match raw.response_format.as_deref() {
            None | Some("b64_json") => false,
            Some("url") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "response_format",
                    format!("response_format is b64_json or url, not {other:?}"),
                ));
            }
        };
        if let Some(compression) = raw.output_compression
            && !(0..=100).contains(&compression)
        {
            return Err(ApiError::invalid(
                "output_compression",
                format!("output_compression is from 0 to 100, not {compression}"),
            ));
        }
        // Accepted for OpenAI's clients, without effect here: moderation (nothing is
        // filtered), background, quality, style and the caller's `user` (never passed on).
        let _ = (
            raw.moderation,
            raw.background,
            raw.quality,
            raw.style,
            raw.user,
        );
        Ok(Self {
            model: raw
                .model
                .filter(|model| !model.trim().is_empty())
                .unwrap_or_else(|| default_model.to_owned()),
            prompt,
            negative_prompt: None,
            size,
            steps: None,
            cfg_scale: None,
            seed: None,
            style_preset: None,
            format: raw
                .output_format
                .as_deref()
                .map(|format| ImageFormat::parse(format, "output_format"))
                .transpose()?
                .unwrap_or(ImageFormat::Png),
            variants,
            safe_mode: false,
            answer: Answer::OpenAi { data_url },
            fit_size: true,
        })
    }

    /// Checks the request against what its model takes, and fills in the model's defaults:
    /// the size and steps to ask for.
    pub fn check_limits(&self, limits: &ImageLimits) -> Result<((u32, u32), u32), ApiError> {
        let divisor = limits.divisor.max(1);
        let (width, height) = match self.size {
            None => {
                let side = limits.max_width.min(limits.max_height).min(1024);
                (side / divisor * divisor, side / divisor * divisor)
            }
            Some((width, height)) if self.fit_size => fit(width, height, limits),
            Some((width, height)) => {
                for (value, most, param) in [
                    (width, limits.max_width, "width"),
                    (height, limits.max_height, "height"),
                ] {
                    if value > most {
                        return Err(ApiError::invalid(
                            param,
                            format!("{param} is at most {most} pixels on this model, not {value}"),
                        ));
                    }
                    if value % divisor != 0 {
                        return Err(ApiError::invalid(
                            param,
                            format!(
                                "{param} must be a multiple of {divisor} on this model, not {value}"
                            ),
                        ));
                    }
                }
                (width, height)
            }
        };
        let steps = self.steps.unwrap_or(limits.default_steps);
        if steps > limits.max_steps {
            return Err(ApiError::invalid(
                "steps",
                format!(
                    "steps is at most {} on this model, not {steps}",
                    limits.max_steps
                ),
            ));
        }
        Ok(((width, height), steps))
    }

    /// The style preset it names, if any; an error naming the list when it is not one.
    pub fn style(&self) -> Result<Option<&'static Style>, ApiError> {
        self.style_preset
            .as_deref()
            .map(|name| {
                style(name).ok_or_else(|| {
                    ApiError::invalid(
                        "style_preset",
                        format!(
                            "style_preset {name:?} is not a style here; GET /image/styles lists them"
                        ),
                    )
                })
            })
            .transpose()
    }

    /// What a provider of `model_id` (whose limits are `limits`) is asked for: the size and
    /// steps settled, the style applied, and `seed` where the request gave none.
    pub fn to_provider(
        &self,
        model_id: &str,
        limits: &ImageLimits,
        seed: i64,
    ) -> Result<ProviderImageRequest, ApiError> {
        let ((width, height), steps) = self.check_limits(limits)?;
        let (prompt, negative_prompt) = match self.style()? {
            Some(style) => style.apply(&self.prompt, self.negative_prompt.as_deref()),
            None => (self.prompt.clone(), self.negative_prompt.clone()),
        };
        Ok(ProviderImageRequest {
            model: model_id.to_owned(),
            prompt,
            negative_prompt,
            width,
            height,
            steps,
            cfg_scale: self.cfg_scale,
            seed: self.seed.unwrap_or(seed),
            variants: self.variants,
            format: self.format,
        })
    }

    /// Characters of prompt and negative prompt.
    pub fn prompt_characters(&self) -> usize {
        self.prompt.chars().count()
            + self
                .negative_prompt
                .as_deref()
                .map_or(0, |text| text.chars().count())
    }
}

/// `WIDTHxHEIGHT`, each side 1 to 4096 pixels.
fn parse_size(text: &str) -> Result<(u32, u32), ApiError> {
    let parsed = text.split_once('x').and_then(|(width, height)| {
        Some((width.parse::<u32>().ok()?, height.parse::<u32>().ok()?))
    });
    match parsed {
        Some((width, height)) if (1..=4096).contains(&width) && (1..=4096).contains(&height) => {
            Ok((width, height))
        }
        _ => Err(ApiError::invalid(
            "size",
            format!("size is WIDTHxHEIGHT (such as 1024x1024) or auto, not {text:?}"),
        )),
    }
}

/// `width` × `height` scaled down (keeping its shape) to fit the model's bounds, each side
/// rounded down to the model's divisor.
fn fit(width: u32, height: u32, limits: &ImageLimits) -> (u32, u32) {
    let divisor = limits.divisor.max(1);
    let (width, height) = (u64::from(width), u64::from(height));
    let (most_width, most_height) = (u64::from(limits.max_width), u64::from(limits.max_height));
    // The smaller of the two scale factors, as a fraction: most / side.
    let (numerator, denominator) = if width * most_height >= height * most_width {
        (most_width, width)
    } else {
        (most_height, height)
    };
    let (width, height) = if numerator < denominator {
        (
            width * numerator / denominator,
            height * numerator / denominator,
        )
    } else {
        (width, height)
    };
    let round = |side: u64| {
        let side = u32::try_from(side).unwrap_or(u32::MAX);
        (side / divisor * divisor).max(divisor)
    };
    (round(width), round(height))
}

/// What the gateway asks a provider for: the request with the style applied, the size,
/// steps and seed settled, and nothing of who asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderImageRequest {
    pub model: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_scale: Option<f32>,
    /// Variant `i` is made with `seed + i`.
    pub seed: i64,
    pub variants: u32,
    pub format: ImageFormat,
}

/// Largest image uploaded for editing (Venice's bound on an upload).
pub const MAX_UPLOAD_BYTES: usize = 25 * 1024 * 1024;

/// What the gateway asks a background remover: the uploaded image, base64. The provider
/// answers with the PNG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderBackgroundRequest {
    pub model: String,
    pub image: String,
}

/// Longest prompt of an edit, in characters (Venice's schema).
pub const MAX_EDIT_PROMPT_CHARS: usize = 32_768;
/// Fewest pixels of an image to edit or upscale (Venice's bound: 256 × 256).
pub const MIN_SOURCE_PIXELS: usize = 65_536;
/// Most pixels of an upscaled image (Venice's bound: 4,096 × 4,096).
pub const MAX_UPSCALED_PIXELS: usize = 16_777_216;

/// What the gateway asks an image model to edit: the image (base64), its prompt, and the size,
/// steps and seed settled. The provider answers with the image's bytes in `format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderEditRequest {
    pub model: String,
    pub prompt: String,
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub seed: i64,
    pub format: ImageFormat,
}

/// What the gateway asks an upscaler: the image (base64) and the factor. The provider answers
/// with a PNG `scale` times as wide and tall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderUpscaleRequest {
    pub model: String,
    pub image: String,
    pub scale: u32,
    pub width: u32,
    pub height: u32,
}

/// The factor an image of `width` × `height` is upscaled by when `asked` (2 or 4) is asked for:
/// 4 comes down to 2 where the result would pass [`MAX_UPSCALED_PIXELS`] (as Venice does);
/// `None` when even 2 would.
pub fn upscale_factor(asked: u32, width: usize, height: usize) -> Option<u32> {
    [asked, 2]
        .into_iter()
        .filter(|scale| *scale <= asked)
        .find(|scale| {
            let scale = *scale as usize;
            width
                .saturating_mul(scale)
                .saturating_mul(height.saturating_mul(scale))
                <= MAX_UPSCALED_PIXELS
        })
}

/// A provider's answer: every image in the asked format, base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderImages {
    pub format: ImageFormat,
    pub images: Vec<String>,
    /// Milliseconds the engine took.
    pub inference_ms: u64,
}

/// Venice's `/image/generate` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VeniceImages {
    pub id: String,
    pub images: Vec<String>,
    /// The request as sent; Gondola does not echo it.
    pub request: Option<serde_json::Value>,
    pub timing: Timing,
}

/// Milliseconds, as Venice reports them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    pub inference_duration: u64,
    pub inference_preprocessing_time: u64,
    pub inference_queue_time: u64,
    pub total: u64,
}

/// OpenAI's `/images/generations` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenAiImages {
    pub created: u64,
    pub data: Vec<OpenAiImage>,
}

/// One image of OpenAI's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OpenAiImage {
    B64 { b64_json: String },
    Url { url: String },
}

/// `/image/styles`' answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StyleList {
    pub object: String,
    pub data: Vec<String>,
}
