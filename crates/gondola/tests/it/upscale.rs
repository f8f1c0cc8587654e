//! Upscaling with the real model: `gondola serve` runs Real-ESRGAN's compact network
//! (realesr-animevideov3, pulled and verified like the other models) in an embedded provider.
//! A picture of flat shapes, shrunk to half its size, comes back twice as large and close to
//! the original, with edges crisper than Lanczos resampling gives; four times, a picture with
//! transparency larger than one tile keeps its alpha.

use std::io::Cursor;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{client, listed_model, serve};

/// The picture's colours: a pale background and three shapes.
const PALETTE: [[u8; 3]; 4] = [[235, 240, 250], [220, 60, 40], [30, 90, 200], [20, 140, 60]];

/// A 512 × 512 picture: an ellipse, a triangle and a square in flat colours.
fn picture() -> image::RgbImage {
    image::RgbImage::from_fn(512, 512, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let colour = if ((fx - 200.0) / 140.0).powi(2) + ((fy - 190.0) / 120.0).powi(2) < 1.0 {
            1
        } else if fy > 200.0 && fy < 480.0 && fx > 260.0 && fx - 260.0 > (480.0 - fy) * 0.8 {
            2
        } else if (60..200).contains(&x) && (360..480).contains(&y) {
            3
        } else {
            0
        };
        image::Rgb(PALETTE[colour])
    })
}

fn png(picture: &image::DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    picture
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encode");
    bytes
}

/// Of the pixels near an edge of `original`, the share within a small distance of one of the
/// palette's colours in `picture`: what is not is blurred.
fn crisp(picture: &image::RgbImage, original: &image::RgbImage) -> f64 {
    let (width, height) = original.dimensions();
    let near_edge = |x: u32, y: u32| {
        let centre = original.get_pixel(x, y);
        (x.saturating_sub(3)..(x + 4).min(width))
            .flat_map(|nx| (y.saturating_sub(3)..(y + 4).min(height)).map(move |ny| (nx, ny)))
            .any(|(nx, ny)| original.get_pixel(nx, ny) != centre)
    };
    let edges: Vec<&image::Rgb<u8>> = picture
        .enumerate_pixels()
        .filter(|(x, y, _)| near_edge(*x, *y))
        .map(|(_, _, pixel)| pixel)
        .collect();
    let near = edges
        .iter()
        .filter(|pixel| {
            PALETTE.iter().any(|colour| {
                let distance: f64 = (0..3)
                    .map(|c| (f64::from(pixel[c]) - f64::from(colour[c])).powi(2))
                    .sum();
                distance.sqrt() < 16.0
            })
        })
        .count();
    near as f64 / edges.len() as f64
}

fn mean_difference(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let total: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum();
    total / a.as_raw().len() as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_model_enlarges_images_twice_and_four_times() {
    let (_process, url, _dir) = serve(&[], None);
    let http = client();
    let route = format!("{url}/api/v1/image/upscale");
    let original = picture();
    let small = image::imageops::resize(&original, 256, 256, image::imageops::FilterType::Lanczos3);

    // Twice, as a file upload.
    let form = reqwest::multipart::Form::new()
        .part(
            "image",
            reqwest::multipart::Part::bytes(png(&image::DynamicImage::ImageRgb8(small.clone())))
                .file_name("shapes.png")
                .mime_str("image/png")
                .expect("mime"),
        )
        .text("scale", "2");
    let response = http
        .post(&route)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(
        response.headers()["x-venice-model-id"],
        "realesr-animevideov3"
    );
    let enlarged = image::load_from_memory(&response.bytes().await.expect("png"))
        .expect("a PNG")
        .to_rgb8();
    assert_eq!(enlarged.dimensions(), (512, 512));
    let difference = mean_difference(&enlarged, &original);
    assert!(difference < 8.0, "close to the original: {difference}");
    let lanczos = image::imageops::resize(&small, 512, 512, image::imageops::FilterType::Lanczos3);
    let (model, resampled) = (crisp(&enlarged, &original), crisp(&lanczos, &original));
    assert!(
        model > resampled + 0.05,
        "edges crisper than Lanczos: {model} against {resampled}"
    );

    // Four times, base64 JSON: a picture with a transparent band, larger than one tile.
    let mut clear = image::DynamicImage::ImageRgb8(image::imageops::resize(
        &original,
        300,
        260,
        image::imageops::FilterType::Lanczos3,
    ))
    .to_rgba8();
    for (_, y, pixel) in clear.enumerate_pixels_mut() {
        if y < 40 {
            pixel[3] = 0;
        }
    }
    let response = http
        .post(&route)
        .json(&json!({
            "image": base64::engine::general_purpose::STANDARD
                .encode(png(&image::DynamicImage::ImageRgba8(clear))),
            "scale": 4,
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let enlarged = image::load_from_memory(&response.bytes().await.expect("png"))
        .expect("a PNG")
        .to_rgba8();
    assert_eq!(enlarged.dimensions(), (1200, 1040));
    assert_eq!(enlarged.get_pixel(600, 40)[3], 0, "the band stays clear");
    assert_eq!(
        enlarged.get_pixel(600, 600)[3],
        255,
        "the rest stays opaque"
    );
    // Across the tiles' seams (the 256th source column and row), the shapes are whole.
    let reference =
        image::imageops::resize(&original, 1200, 1040, image::imageops::FilterType::Lanczos3);
    let rgb = image::DynamicImage::ImageRgba8(enlarged).to_rgb8();
    let seam: f64 = (160..1040)
        .map(|y| {
            (0..3)
                .map(|c| {
                    f64::from(rgb.get_pixel(1024, y)[c].abs_diff(reference.get_pixel(1024, y)[c]))
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / (880.0 * 3.0);
    assert!(seam < 12.0, "no seam at the tiles' edge: {seam}");

    // A factor the model does not make is refused.
    let response = http
        .post(&route)
        .json(&json!({
            "image": base64::engine::general_purpose::STANDARD
                .encode(png(&image::DynamicImage::ImageRgb8(small))),
            "scale": 3,
        }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["param"], "scale");

    // The model is listed as an upscaler, priced per image.
    let listed = listed_model(&http, &url, "?type=all", "realesr-animevideov3").await;
    assert_eq!(listed["type"], "upscale");
    assert!(listed["model_spec"]["pricing"]["generation"]["usd"].is_number());
}
