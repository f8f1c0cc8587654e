//! Background removal with the real model: `gondola serve` runs U²-Net (u2netp, pulled and
//! verified like the other models) in an embedded provider. A picture of a red ellipse and a
//! yellow square on a soft gradient comes back as a PNG of its size whose alpha keeps the
//! shapes and drops the background, whether uploaded as a file or as base64 JSON (a JPEG);
//! what the gateway will not take is refused in the API's shape, naming the bound.

use std::io::Cursor;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{client, listed_model, serve};

/// A 256 × 256 picture: a diagonal gradient, a red ellipse centred at (130, 130) with radii
/// 60 and 80, and a yellow square below it.
fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(256, 256, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let inside = ((fx - 130.0) / 60.0).powi(2) + ((fy - 130.0) / 80.0).powi(2) < 1.0;
        if (100..160).contains(&x) && (180..240).contains(&y) {
            image::Rgb([230, 200, 60])
        } else if inside {
            image::Rgb([210, 45, 40])
        } else {
            image::Rgb([
                (70.0 + fx * 0.3) as u8,
                (110.0 + fy * 0.3) as u8,
                (170.0 - fx * 0.1) as u8,
            ])
        }
    })
}

fn encoded(picture: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(picture.clone())
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("encode");
    bytes
}

/// The mean alpha (0 to 1) inside the ellipse, and in the four corners.
fn alphas(png: &[u8]) -> (f32, f32) {
    let cut = image::load_from_memory(png).expect("a PNG").to_rgba8();
    assert_eq!(cut.dimensions(), (256, 256));
    let (mut inside, mut inside_count, mut corners, mut corner_count) = (0f32, 0f32, 0f32, 0f32);
    for (x, y, pixel) in cut.enumerate_pixels() {
        let (fx, fy) = (x as f32, y as f32);
        let alpha = f32::from(pixel[3]) / 255.0;
        if ((fx - 130.0) / 60.0).powi(2) + ((fy - 130.0) / 80.0).powi(2) < 0.8 {
            inside += alpha;
            inside_count += 1.0;
        }
        if !(30..226).contains(&x) && !(30..226).contains(&y) {
            corners += alpha;
            corner_count += 1.0;
        }
    }
    (inside / inside_count, corners / corner_count)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_model_takes_the_background_away_and_keeps_the_subject() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();
    let route = format!("{url}/api/v1/image/background-remove");
    let picture = picture();

    // A file upload.
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(encoded(&picture, image::ImageFormat::Png))
            .file_name("shapes.png")
            .mime_str("image/png")
            .expect("mime"),
    );
    let response = http
        .post(&route)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-venice-model-id"], "u2netp");
    let png = response.bytes().await.expect("png");
    let (inside, corners) = alphas(&png);
    assert!(inside > 0.8, "the subject is kept: {inside}");
    assert!(corners < 0.1, "the background is gone: {corners}");
    // The colours are the picture's own.
    let cut = image::load_from_memory(&png).expect("a PNG").to_rgba8();
    assert_eq!(&cut.get_pixel(130, 130).0[..3], &[210, 45, 40]);

    // Base64 in JSON, a JPEG.
    let jpeg = encoded(&picture, image::ImageFormat::Jpeg);
    let response = http
        .post(&route)
        .json(&json!({"image": base64::engine::general_purpose::STANDARD.encode(&jpeg)}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let (inside, corners) = alphas(&response.bytes().await.expect("png"));
    assert!(inside > 0.8 && corners < 0.1, "{inside} {corners}");

    // What is not taken, refused naming why.
    let mut wide = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    wide.extend_from_slice(&5000u32.to_be_bytes());
    wide.extend_from_slice(&16u32.to_be_bytes());
    wide.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    for (body, param, says) in [
        (
            json!({"image_url": "https://example.com/a.png"}),
            "image_url",
            "fetches no URL",
        ),
        (
            json!({"image": base64::engine::general_purpose::STANDARD.encode(b"plain text")}),
            "image",
            "not a PNG",
        ),
        (
            json!({"image": base64::engine::general_purpose::STANDARD.encode(&wide)}),
            "image",
            "4096",
        ),
    ] {
        let response = http.post(&route).json(&body).send().await.expect("send");
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["param"], param, "{error}");
        assert!(
            error["error"].as_str().expect("message").contains(says),
            "{error}"
        );
    }
    let response = http
        .post(&route)
        .header("content-type", "image/png")
        .body(encoded(&picture, image::ImageFormat::Png))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 415);
    // The model is listed, priced per image.
    let listed = listed_model(&http, &url, "?type=all", "u2netp").await;
    assert_eq!(listed["type"], "background-removal");
    assert!(listed["model_spec"]["pricing"]["generation"]["usd"].is_number());
}
