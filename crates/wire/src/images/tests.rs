//! The image formats' tests: parsing, bounds, limits, styles, signatures.

use super::*;

fn venice(body: serde_json::Value) -> Result<ImageRequest, ApiError> {
    ImageRequest::parse_venice(body.to_string().as_bytes(), "default")
}

fn openai(body: serde_json::Value) -> Result<ImageRequest, ApiError> {
    ImageRequest::parse_openai(body.to_string().as_bytes(), "default")
}

#[test]
fn a_venice_request_takes_its_fields_and_venices_defaults() {
    let request = venice(serde_json::json!({
        "model": "sdxl", "prompt": "a fox", "negative_prompt": "rain", "width": 512,
        "height": 768, "steps": 12, "cfg_scale": 6.5, "seed": 42, "style_preset": "Anime",
        "format": "png", "variants": 3, "safe_mode": true, "hide_watermark": true
    }))
    .expect("parses");
    assert_eq!(request.model, "sdxl");
    assert_eq!(request.size, Some((512, 768)));
    assert_eq!(request.steps, Some(12));
    assert_eq!(request.seed, Some(42));
    assert_eq!(request.variants, 3);
    assert_eq!(request.format, ImageFormat::Png);
    assert_eq!(request.answer, Answer::Venice { binary: false });
    let bare = venice(serde_json::json!({"prompt": "a fox"})).expect("parses");
    assert_eq!(bare.model, "default");
    assert_eq!(bare.format, ImageFormat::Webp);
    assert_eq!(bare.size, None);
    assert_eq!(bare.variants, 1);
    assert!(!bare.safe_mode, "safe mode is off unless asked for");
    // Venice's seed 0 means "draw one".
    assert_eq!(
        venice(serde_json::json!({"prompt": "a fox", "seed": 0}))
            .expect("parses")
            .seed,
        None
    );
}

#[test]
fn each_bound_is_refused_naming_its_field() {
    let long = "x".repeat(MAX_PROMPT_CHARS + 1);
    for (body, param) in [
        (serde_json::json!({"prompt": ""}), "prompt"),
        (serde_json::json!({"prompt": long}), "prompt"),
        (serde_json::json!({"prompt": "a", "width": 0}), "width"),
        (serde_json::json!({"prompt": "a", "height": 1281}), "height"),
        (serde_json::json!({"prompt": "a", "steps": 0}), "steps"),
        (
            serde_json::json!({"prompt": "a", "cfg_scale": 0}),
            "cfg_scale",
        ),
        (
            serde_json::json!({"prompt": "a", "cfg_scale": 21}),
            "cfg_scale",
        ),
        (
            serde_json::json!({"prompt": "a", "seed": 1_000_000_000}),
            "seed",
        ),
        (
            serde_json::json!({"prompt": "a", "variants": 5}),
            "variants",
        ),
        (
            serde_json::json!({"prompt": "a", "variants": 2, "return_binary": true}),
            "variants",
        ),
        (
            serde_json::json!({"prompt": "a", "format": "gif"}),
            "format",
        ),
        (serde_json::json!({"prompt": "a", "width": "big"}), "width"),
        (
            serde_json::json!({"prompt": "a", "enhance_prompt": true}),
            "enhance_prompt",
        ),
        (
            serde_json::json!({"prompt": "a", "style_references": [{"image": "x"}]}),
            "style_references",
        ),
        (
            serde_json::json!({"prompt": "a", "colour": "red"}),
            "colour",
        ),
    ] {
        let error = venice(body.clone()).expect_err(&body.to_string());
        assert_eq!(error.status(), 400, "{body}");
        assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
    }
    for (body, param) in [
        (serde_json::json!({"prompt": "a", "n": 0}), "n"),
        (serde_json::json!({"prompt": "a", "size": "huge"}), "size"),
        (serde_json::json!({"prompt": "a", "size": "0x10"}), "size"),
        (
            serde_json::json!({"prompt": "a", "response_format": "file"}),
            "response_format",
        ),
        (
            serde_json::json!({"prompt": "a".repeat(MAX_OPENAI_PROMPT_CHARS + 1)}),
            "prompt",
        ),
    ] {
        let error = openai(body.clone()).expect_err(&body.to_string());
        assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
    }
}

#[test]
fn the_models_limits_settle_size_and_steps() {
    let limits = ImageLimits::default();
    let request = venice(serde_json::json!({"prompt": "a"})).expect("parses");
    assert_eq!(
        request.check_limits(&limits).expect("fits"),
        ((1024, 1024), 20)
    );
    let odd =
        venice(serde_json::json!({"prompt": "a", "width": 513, "height": 512})).expect("parses");
    assert_eq!(
        odd.check_limits(&limits)
            .expect_err("not a multiple")
            .param
            .as_deref(),
        Some("width")
    );
    let small = ImageLimits {
        max_width: 512,
        max_height: 512,
        ..limits
    };
    let wide =
        venice(serde_json::json!({"prompt": "a", "width": 768, "height": 512})).expect("parses");
    assert_eq!(
        wide.check_limits(&small)
            .expect_err("too wide")
            .param
            .as_deref(),
        Some("width")
    );
    let many = venice(serde_json::json!({"prompt": "a", "steps": 51})).expect("parses");
    assert_eq!(
        many.check_limits(&limits)
            .expect_err("too many")
            .param
            .as_deref(),
        Some("steps")
    );
    // OpenAI's sizes are scaled to fit, keeping their shape.
    let openai_wide =
        openai(serde_json::json!({"prompt": "a", "size": "1792x1024"})).expect("parses");
    assert_eq!(
        openai_wide.check_limits(&limits).expect("fits").0,
        (1280, 728)
    );
    let openai_small =
        openai(serde_json::json!({"prompt": "a", "size": "256x256"})).expect("parses");
    assert_eq!(
        openai_small.check_limits(&limits).expect("fits").0,
        (256, 256)
    );
}

#[test]
fn an_openai_request_reads_its_answer_shape_and_format() {
    let request = openai(serde_json::json!({
        "model": "dall-e-3", "prompt": "a fox", "n": 2, "size": "512x512",
        "response_format": "url", "output_format": "jpeg", "quality": "hd", "user": "u1"
    }))
    .expect("parses");
    assert_eq!(request.answer, Answer::OpenAi { data_url: true });
    assert_eq!(request.format, ImageFormat::Jpeg);
    assert_eq!(request.variants, 2);
    assert_eq!(request.size, Some((512, 512)));
}

#[test]
fn styles_are_found_loosely_and_wrap_the_prompt() {
    let style = style("3d-model").expect("found");
    assert_eq!(style.name, "3D Model");
    let (prompt, negative) = style.apply("a fox", Some("rain"));
    assert!(prompt.contains("a fox") && prompt != "a fox");
    assert!(negative.expect("negative").starts_with("rain, "));
    assert!(self::style("Watercolour Dreams").is_none());
    let names: std::collections::BTreeSet<_> = STYLES.iter().map(|style| style.name).collect();
    assert_eq!(names.len(), STYLES.len(), "names are unique");
}

#[test]
fn upscaling_comes_down_to_twice_where_four_times_is_too_large() {
    assert_eq!(upscale_factor(4, 512, 512), Some(4));
    assert_eq!(upscale_factor(4, 1500, 1500), Some(2));
    assert_eq!(upscale_factor(2, 1500, 1500), Some(2));
    assert_eq!(upscale_factor(4, 3000, 3000), None);
}

#[test]
fn formats_are_told_by_their_signatures() {
    assert_eq!(
        ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
        Some(ImageFormat::Png)
    );
    assert_eq!(
        ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
        Some(ImageFormat::Jpeg)
    );
    assert_eq!(
        ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8L"),
        Some(ImageFormat::Webp)
    );
    assert_eq!(ImageFormat::sniff(b"GIF89a"), None);
}
