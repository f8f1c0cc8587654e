//! The image engines' own APIs, as a provider speaks them:
//!
//! - an OpenAI-compatible images server (`/images/generations`, `b64_json`, and
//!   `/images/edits`): prompt, count and size only, since OpenAI's API has no negative prompt,
//!   steps or seed;
//! - AUTOMATIC1111's web UI and its forks such as Forge (`/sdapi/v1/txt2img` one call per
//!   variant with seeds `seed`, `seed + 1`, …, so that no engine setting can slip a grid image
//!   into the answer; `img2img` for edits; `extra-single-image` for upscales);
//! - ComfyUI (`/prompt`, `/history/{id}`, `/view`), with a workflow in its API format whose
//!   `"$prompt"`-style placeholders are filled in; its outputs are fetched, then its history
//!   entry deleted. The built-in workflow ends in a preview node, whose images ComfyUI keeps
//!   in its temporary folder only.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use wire::error::{ApiError, ErrorCode};
use wire::images::{ImageFormat, ProviderImageRequest};

use super::MAX_UPSCALED_BYTES;
use crate::{call_upstream, upstream_error};

/// Most bytes of an engine's answer carrying images (four large PNGs in base64).
const MAX_ENGINE_REPLY_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of one image fetched from ComfyUI.
const MAX_ENGINE_IMAGE_BYTES: usize = 16 * 1024 * 1024;
/// Most bytes of ComfyUI's answers about a job.
const MAX_ENGINE_STATUS_BYTES: usize = 1024 * 1024;
/// How often ComfyUI is asked whether a job is done.
const COMFYUI_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a ComfyUI job may take.
const COMFYUI_JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// The cfg scale asked for when a request gives none (the usual Stable Diffusion value).
const DEFAULT_CFG_SCALE: f32 = 7.0;
/// How far an edit may move from its source image (AUTOMATIC1111's usual img2img strength).
const EDIT_DENOISING: f32 = 0.75;

/// ComfyUI's built-in text-to-image workflow (a checkpoint, two prompts, one sampler, a
/// preview), in its API format with placeholders.
pub const COMFYUI_TXT2IMG_WORKFLOW: &str = include_str!("comfyui-txt2img.json");

/// Placeholders a ComfyUI workflow may hold, each a JSON string standing alone as a value.
const PLACEHOLDERS: [&str; 9] = [
    "$prompt",
    "$negative_prompt",
    "$width",
    "$height",
    "$steps",
    "$cfg_scale",
    "$seed",
    "$variants",
    "$model",
];

/// Checks a ComfyUI workflow before the provider starts: a JSON object of nodes in the API
/// format, with a `$prompt` placeholder somewhere.
pub fn check_comfyui_workflow(workflow: &Value) -> Result<(), String> {
    let nodes = workflow
        .as_object()
        .ok_or("a ComfyUI workflow in the API format is a JSON object of nodes")?;
    if nodes
        .values()
        .any(|node| node.get("class_type").and_then(Value::as_str).is_none())
    {
        return Err(
            "every node of a ComfyUI workflow has a class_type (use \"Save (API Format)\")".into(),
        );
    }
    if !holds_placeholder(workflow, "$prompt") {
        return Err("the ComfyUI workflow has no \"$prompt\" placeholder for the prompt".into());
    }
    Ok(())
}

fn holds_placeholder(value: &Value, placeholder: &str) -> bool {
    match value {
        Value::String(text) => text == placeholder,
        Value::Array(items) => items
            .iter()
            .any(|item| holds_placeholder(item, placeholder)),
        Value::Object(fields) => fields
            .values()
            .any(|item| holds_placeholder(item, placeholder)),
        _ => false,
    }
}

/// The engine behind this provider, for one request.
pub(super) struct Engine<'a> {
    http: &'a reqwest::Client,
    base_url: &'a str,
    model: &'a str,
    api_key: Option<&'a str>,
}

impl<'a> Engine<'a> {
    /// The engine at `base_url` serving `model`, through this serving thread's client.
    pub(super) fn new(
        state: &'a crate::AppState,
        base_url: &'a str,
        model: &'a str,
        api_key: Option<&'a str>,
    ) -> Self {
        Self {
            http: state.http.get(),
            base_url: base_url.trim_end_matches('/'),
            model,
            api_key,
        }
    }
}

fn engine_broke(what: &str) -> ApiError {
    ApiError::new(ErrorCode::UpstreamError, format!("the image engine {what}"))
}

fn decode_base64(text: &str) -> Result<Vec<u8>, ApiError> {
    // Some engines send a data URL.
    let payload = text
        .split_once("base64,")
        .map_or(text, |(_, payload)| payload);
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| engine_broke("answered an image that is not base64"))
}

impl Engine<'_> {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let call = self.http.post(format!("{}{path}", self.base_url));
        match self.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let call = self.http.get(format!("{}{path}", self.base_url));
        match self.api_key {
            Some(key) => call.bearer_auth(key),
            None => call,
        }
    }

    /// A successful answer's JSON, or the engine's error as this provider's.
    async fn json(
        &self,
        call: reqwest::RequestBuilder,
        max_bytes: usize,
    ) -> Result<Value, ApiError> {
        let (status, reply) = call_upstream(call, max_bytes).await?;
        if !(200..300).contains(&status) {
            return Err(upstream_error(status, &reply));
        }
        serde_json::from_slice(&reply)
            .map_err(|_| engine_broke("answered something that is not JSON"))
    }

    pub(super) async fn openai(
        &self,
        request: &ProviderImageRequest,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let answer = self
            .json(
                self.post("/images/generations").json(&json!({
                    "model": self.model,
                    "prompt": request.prompt,
                    "n": request.variants,
                    "size": format!("{}x{}", request.width, request.height),
                    "response_format": "b64_json",
                })),
                MAX_ENGINE_REPLY_BYTES,
            )
            .await?;
        let images = answer
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| engine_broke("answered without data"))?;
        images
            .iter()
            .take(usize::try_from(request.variants).unwrap_or(1))
            .map(|image| {
                image
                    .get("b64_json")
                    .and_then(Value::as_str)
                    .ok_or_else(|| engine_broke("answered an image without b64_json"))
                    .and_then(decode_base64)
            })
            .collect()
    }

    pub(super) async fn automatic1111(
        &self,
        request: &ProviderImageRequest,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let mut images = Vec::new();
        for variant in 0..request.variants {
            let body = json!({
                "prompt": request.prompt,
                "negative_prompt": request.negative_prompt.clone().unwrap_or_default(),
                "width": request.width,
                "height": request.height,
                "steps": request.steps,
                "cfg_scale": request.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE),
                "seed": request.seed.unsigned_abs() + u64::from(variant),
                "batch_size": 1,
                "n_iter": 1,
                "send_images": true,
                "save_images": false,
            });
            images.push(self.a1111_image("/sdapi/v1/txt2img", body).await?);
        }
        Ok(images)
    }

    /// Asks AUTOMATIC1111 at `path` (one image a call), with the checkpoint chosen where the
    /// provider names one: the image's bytes.
    async fn a1111_image(&self, path: &str, mut body: Value) -> Result<Vec<u8>, ApiError> {
        if !self.model.is_empty() {
            body["override_settings"] = json!({ "sd_model_checkpoint": self.model });
            body["override_settings_restore_afterwards"] = json!(false);
        }
        let answer = self
            .json(self.post(path).json(&body), MAX_ENGINE_REPLY_BYTES)
            .await?;
        let first = answer
            .get("images")
            .and_then(Value::as_array)
            .and_then(|images| images.first())
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("answered without images"))?;
        decode_base64(first)
    }

    pub(super) async fn img2img(
        &self,
        request: &wire::images::ProviderEditRequest,
    ) -> Result<Vec<u8>, ApiError> {
        let body = json!({
            "init_images": [request.image],
            "prompt": request.prompt,
            "negative_prompt": "",
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "cfg_scale": DEFAULT_CFG_SCALE,
            "seed": request.seed.unsigned_abs(),
            "denoising_strength": EDIT_DENOISING,
            "batch_size": 1,
            "n_iter": 1,
            "send_images": true,
            "save_images": false,
        });
        self.a1111_image("/sdapi/v1/img2img", body).await
    }

    pub(super) async fn openai_edit(
        &self,
        request: &wire::images::ProviderEditRequest,
        source: Vec<u8>,
    ) -> Result<Vec<u8>, ApiError> {
        let name = match ImageFormat::sniff(&source) {
            Some(ImageFormat::Jpeg) => "image.jpg",
            Some(ImageFormat::Webp) => "image.webp",
            _ => "image.png",
        };
        let form = reqwest::multipart::Form::new()
            .part(
                "image",
                reqwest::multipart::Part::bytes(source).file_name(name),
            )
            .text("model", self.model.to_owned())
            .text("prompt", request.prompt.clone())
            .text("n", "1")
            .text("size", format!("{}x{}", request.width, request.height))
            .text("response_format", "b64_json");
        let answer = self
            .json(
                self.post("/images/edits").multipart(form),
                MAX_ENGINE_REPLY_BYTES,
            )
            .await?;
        answer
            .pointer("/data/0/b64_json")
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("answered without b64_json"))
            .and_then(decode_base64)
    }

    pub(super) async fn extras(
        &self,
        request: &wire::images::ProviderUpscaleRequest,
    ) -> Result<Vec<u8>, ApiError> {
        let answer = self
            .json(
                self.post("/sdapi/v1/extra-single-image").json(&json!({
                    "image": request.image,
                    "resize_mode": 0,
                    "upscaling_resize": request.scale,
                    "upscaler_1": self.model,
                    "show_extras_results": true,
                })),
                MAX_UPSCALED_BYTES,
            )
            .await?;
        answer
            .get("image")
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("answered without an image"))
            .and_then(decode_base64)
    }

    pub(super) async fn comfyui(
        &self,
        workflow: &Value,
        request: &ProviderImageRequest,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let graph = fill(workflow, request, self.model);
        let mut client_id = [0u8; 16];
        rand::fill(&mut client_id);
        let queued = self
            .json(
                self.post("/prompt").json(&json!({
                    "prompt": graph,
                    "client_id": hex::encode(client_id),
                })),
                MAX_ENGINE_STATUS_BYTES,
            )
            .await?;
        let prompt_id = queued
            .get("prompt_id")
            .and_then(Value::as_str)
            .ok_or_else(|| engine_broke("queued the workflow without a prompt_id"))?
            .to_owned();
        let fetched = self.comfyui_outputs(&prompt_id, request.variants).await;
        // The job's record goes whatever happened; its images were read already.
        let _ = call_upstream(
            self.post("/history")
                .json(&json!({ "delete": [prompt_id] })),
            MAX_ENGINE_STATUS_BYTES,
        )
        .await;
        fetched
    }

    /// Waits for ComfyUI's job `prompt_id` and fetches its images (at most `variants`).
    async fn comfyui_outputs(
        &self,
        prompt_id: &str,
        variants: u32,
    ) -> Result<Vec<Vec<u8>>, ApiError> {
        let deadline = tokio::time::Instant::now() + COMFYUI_JOB_TIMEOUT;
        let entry = loop {
            let history = self
                .json(
                    self.get(&format!("/history/{prompt_id}")),
                    MAX_ENGINE_STATUS_BYTES,
                )
                .await?;
            if let Some(entry) = history.get(prompt_id) {
                let status = entry.pointer("/status/status_str").and_then(Value::as_str);
                if status == Some("error") {
                    return Err(engine_broke("failed to run the workflow"));
                }
                if entry.pointer("/status/completed").and_then(Value::as_bool) == Some(true)
                    || status == Some("success")
                {
                    break entry.clone();
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    "the image engine did not finish in time",
                ));
            }
            tokio::time::sleep(COMFYUI_POLL_INTERVAL).await;
        };
        let mut files: Vec<(String, String, String)> = Vec::new();
        if let Some(outputs) = entry.get("outputs").and_then(Value::as_object) {
            for output in outputs.values() {
                for image in output
                    .get("images")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let field = |name: &str| {
                        image
                            .get(name)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    files.push((field("filename"), field("subfolder"), field("type")));
                }
            }
        }
        if files.is_empty() {
            return Err(engine_broke("finished the workflow without an image"));
        }
        let mut images = Vec::new();
        for (filename, subfolder, kind) in files
            .into_iter()
            .take(usize::try_from(variants).unwrap_or(1))
        {
            let url = reqwest::Url::parse_with_params(
                &format!("{}/view", self.base_url),
                [
                    ("filename", filename.as_str()),
                    ("subfolder", subfolder.as_str()),
                    ("type", kind.as_str()),
                ],
            )
            .map_err(|_| engine_broke("named an image that cannot be fetched"))?;
            let call = match self.api_key {
                Some(key) => self.http.get(url).bearer_auth(key),
                None => self.http.get(url),
            };
            let (status, bytes) = call_upstream(call, MAX_ENGINE_IMAGE_BYTES).await?;
            if !(200..300).contains(&status) {
                return Err(upstream_error(status, &bytes));
            }
            images.push(bytes);
        }
        Ok(images)
    }
}

/// `workflow` with each placeholder replaced by the request's value, typed as ComfyUI's
/// nodes take it.
fn fill(workflow: &Value, request: &ProviderImageRequest, model: &str) -> Value {
    match workflow {
        Value::String(text) if PLACEHOLDERS.contains(&text.as_str()) => match text.as_str() {
            "$prompt" => json!(request.prompt),
            "$negative_prompt" => json!(request.negative_prompt.clone().unwrap_or_default()),
            "$width" => json!(request.width),
            "$height" => json!(request.height),
            "$steps" => json!(request.steps),
            "$cfg_scale" => json!(request.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE)),
            "$seed" => json!(request.seed.unsigned_abs()),
            "$variants" => json!(request.variants),
            _ => json!(model),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| fill(item, request, model))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, item)| (name.clone(), fill(item, request, model)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ProviderImageRequest {
        ProviderImageRequest {
            model: "m".into(),
            prompt: "a \"quoted\" fox".into(),
            negative_prompt: None,
            width: 64,
            height: 48,
            steps: 6,
            cfg_scale: Some(5.5),
            seed: -12,
            variants: 2,
            format: ImageFormat::Webp,
        }
    }

    #[test]
    fn the_built_in_workflow_is_filled_with_typed_values() {
        let workflow: Value = serde_json::from_str(COMFYUI_TXT2IMG_WORKFLOW).expect("json");
        check_comfyui_workflow(&workflow).expect("a valid workflow");
        let filled = fill(&workflow, &request(), "sd15.safetensors");
        let text = filled.to_string();
        for placeholder in PLACEHOLDERS {
            assert!(
                !text.contains(&format!("\"{placeholder}\"")),
                "{placeholder} left"
            );
        }
        let nodes = filled.as_object().expect("nodes");
        let sampler = nodes
            .values()
            .find(|node| node["class_type"] == "KSampler")
            .expect("a sampler");
        assert_eq!(sampler["inputs"]["seed"], 12);
        assert_eq!(sampler["inputs"]["steps"], 6);
        assert_eq!(sampler["inputs"]["cfg"], 5.5);
        let latent = nodes
            .values()
            .find(|node| node["class_type"] == "EmptyLatentImage")
            .expect("a latent");
        assert_eq!(latent["inputs"]["batch_size"], 2);
        assert_eq!(latent["inputs"]["width"], 64);
        assert!(text.contains("sd15.safetensors"));
        assert!(
            text.contains(r#"a \"quoted\" fox"#),
            "the prompt is a JSON string, escaped"
        );
    }

    #[test]
    fn a_workflow_without_a_prompt_or_in_the_wrong_format_is_refused() {
        assert!(check_comfyui_workflow(&json!([])).is_err());
        assert!(check_comfyui_workflow(&json!({"1": {"inputs": {}}})).is_err());
        assert!(
            check_comfyui_workflow(&json!({"1": {"class_type": "X", "inputs": {"text": "hi"}}}))
                .is_err()
        );
    }
}
