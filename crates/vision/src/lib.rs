//! Image models run by ONNX Runtime (its library loaded at run time, the environment shared
//! with the voice through `onnx`). [`BackgroundRemover`]: U²-Net (the small `u2netp`), which
//! finds an image's salient object; the image comes back as a PNG whose alpha is that mask.
//! [`Upscaler`]: Real-ESRGAN's compact network, which enlarges an image 2 or 4 times.
//!
//! The work for one image: the upload decoded within [`MAX_SIDE`] and [`MAX_DECODE_BYTES`],
//! shrunk to the network's 320 × 320, one run of the network (about 0.7 s on one core), the
//! mask brought back to the image's size, and the PNG written. Blocking: call it off the
//! async runtime.

mod upscale;

pub use upscale::{Upscaler, UpscalerConfig, param_path as upscaler_param_path};

use std::io::Cursor;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Mutex;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageReader, RgbImage, RgbaImage};
use ort::session::Session;
use ort::value::Tensor;

/// Widest and tallest image taken.
pub const MAX_SIDE: u32 = 4096;
/// Most memory a decoder may take for one image.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
/// The network's input side.
const SIDE: u32 = 320;
/// The network's input, as U²-Net was trained: ImageNet's mean and spread per channel.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The network's input's name.
const INPUT: &str = "input.1";

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("ONNX Runtime could not be loaded from {path}: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("the model {path} could not be loaded: {reason}")]
    Model { path: PathBuf, reason: String },
    /// The image given is not one this takes: the caller's to fix.
    #[error("{0}")]
    Input(String),
    #[error("the model failed: {0}")]
    Inference(String),
}

impl VisionError {
    /// Whether the caller sent something that cannot be read.
    pub fn is_clients(&self) -> bool {
        matches!(self, Self::Input(_))
    }
}

pub struct RemoverConfig {
    pub model_path: PathBuf,
    /// `libonnxruntime.so`, pulled beside the model.
    pub runtime_library: PathBuf,
    pub threads: NonZeroU32,
}

/// U²-Net, loaded; one image at a time.
pub struct BackgroundRemover {
    session: Mutex<Session>,
    name: String,
}

impl BackgroundRemover {
    /// Loads ONNX Runtime (once per process) and the model. Blocking.
    pub fn load(config: RemoverConfig) -> Result<Self, VisionError> {
        let model_error = |reason: String| VisionError::Model {
            path: config.model_path.clone(),
            reason,
        };
        let environment =
            onnx::environment(&config.runtime_library).map_err(|reason| VisionError::Runtime {
                path: config.runtime_library.clone(),
                reason,
            })?;
        let threads = usize::try_from(config.threads.get()).unwrap_or(1);
        let mut builder = Session::builder(environment)
            .map_err(|error| model_error(error.to_string()))?
            .with_intra_threads(threads)
            .map_err(|error| model_error(error.to_string()))?;
        let session = builder
            .commit_from_file(&config.model_path)
            .map_err(|error| model_error(error.to_string()))?;
        if session.inputs().first().map(|input| input.name()) != Some(INPUT) {
            return Err(model_error(format!(
                "its input is not {INPUT:?}: not U²-Net"
            )));
        }
        let name = config.model_path.file_stem().map_or_else(
            || "u2netp".to_owned(),
            |stem| stem.to_string_lossy().into_owned(),
        );
        tracing::info!(model = %name, threads, "background remover loaded");
        Ok(Self {
            session: Mutex::new(session),
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `image` (PNG, JPEG or WebP bytes) as a PNG whose alpha is its salient object's mask.
    pub fn remove(&self, image: &[u8]) -> Result<Vec<u8>, VisionError> {
        let picture = decode(image)?.to_rgb8();
        let mask = self.mask(&picture)?;
        let mut cut = RgbaImage::new(picture.width(), picture.height());
        for ((target, source), alpha) in cut.pixels_mut().zip(picture.pixels()).zip(mask.pixels()) {
            *target = image::Rgba([source[0], source[1], source[2], alpha[0]]);
        }
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(cut)
            .write_with_encoder(image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            ))
            .map_err(|error| {
                VisionError::Inference(format!("the PNG could not be written: {error}"))
            })?;
        Ok(out)
    }

    /// The mask of `picture`'s salient object, at its size: 255 where it is, 0 where it is not.
    pub fn mask(&self, picture: &RgbImage) -> Result<GrayImage, VisionError> {
        let failed = |error: ort::Error| VisionError::Inference(error.to_string());
        let input = Tensor::from_array((
            [1usize, 3, SIDE as usize, SIDE as usize],
            network_input(picture),
        ))
        .map_err(failed)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| VisionError::Inference("the model's session was poisoned".into()))?;
        let outputs = session.run(ort::inputs![INPUT => input]).map_err(failed)?;
        let (shape, values) = outputs[0].try_extract_tensor::<f32>().map_err(failed)?;
        if values.len() != (SIDE * SIDE) as usize {
            return Err(VisionError::Inference(format!(
                "the model answered a {shape:?} tensor"
            )));
        }
        let small = mask_from(values);
        Ok(image::imageops::resize(
            &small,
            picture.width(),
            picture.height(),
            FilterType::Lanczos3,
        ))
    }
}

/// Decodes an upload, held to [`MAX_SIDE`] and [`MAX_DECODE_BYTES`].
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, VisionError> {
    // The size from the header first: a decoder may fail on something else before it gets
    // to its limits, and the caller should hear what is wrong.
    if let Ok(size) = imagesize::blob_size(bytes)
        && (size.width > MAX_SIDE as usize || size.height > MAX_SIDE as usize)
    {
        return Err(VisionError::Input(format!(
            "the image is {}x{}, larger than {MAX_SIDE} × {MAX_SIDE} pixels",
            size.width, size.height
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| VisionError::Input("the image cannot be read".into()))?;
    if reader.format().is_none() {
        return Err(VisionError::Input(
            "the file is not a PNG, JPEG or WebP image".into(),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|error| match error {
        image::ImageError::Limits(_) => VisionError::Input(format!(
            "the image is larger than {MAX_SIDE} × {MAX_SIDE} pixels"
        )),
        _ => VisionError::Input("the image cannot be decoded".into()),
    })
}

/// The network's input for `picture`: shrunk to 320 × 320, scaled by its brightest value,
/// normalised per channel, planar (channels, rows, columns).
fn network_input(picture: &RgbImage) -> Vec<f32> {
    let small = image::imageops::resize(picture, SIDE, SIDE, FilterType::Lanczos3);
    let brightest =
        f32::from(small.pixels().flat_map(|pixel| pixel.0).max().unwrap_or(0)).max(1e-6);
    let plane = (SIDE * SIDE) as usize;
    let mut input = vec![0f32; 3 * plane];
    for (index, pixel) in small.pixels().enumerate() {
        for channel in 0..3 {
            input[channel * plane + index] =
                (f32::from(pixel[channel]) / brightest - MEAN[channel]) / STD[channel];
        }
    }
    input
}

/// The network's 320 × 320 output, stretched to span 0 to 255.
fn mask_from(values: &[f32]) -> GrayImage {
    let (low, high) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(low, high), value| {
            (low.min(*value), high.max(*value))
        });
    let span = (high - low).max(1e-6);
    GrayImage::from_fn(SIDE, SIDE, |x, y| {
        let value = values[(y * SIDE + x) as usize];
        image::Luma([(((value - low) / span) * 255.0).round().clamp(0.0, 255.0) as u8])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_is_planar_normalised_and_scaled_by_the_brightest_value() {
        let picture = RgbImage::from_pixel(8, 8, image::Rgb([128, 64, 0]));
        let input = network_input(&picture);
        let plane = (SIDE * SIDE) as usize;
        assert_eq!(input.len(), 3 * plane);
        // Red is the brightest value, so it reads as 1.
        assert!((input[0] - (1.0 - MEAN[0]) / STD[0]).abs() < 1e-3);
        assert!((input[plane] - (0.5 - MEAN[1]) / STD[1]).abs() < 1e-2);
        assert!((input[2 * plane] - (0.0 - MEAN[2]) / STD[2]).abs() < 1e-3);
    }

    #[test]
    fn the_mask_spans_the_whole_range() {
        let mut values = vec![0.2f32; (SIDE * SIDE) as usize];
        values[0] = 0.9;
        let mask = mask_from(&values);
        assert_eq!(mask.get_pixel(0, 0)[0], 255);
        assert_eq!(mask.get_pixel(5, 5)[0], 0);
    }

    #[test]
    fn what_is_not_an_image_or_is_too_large_is_the_callers_to_fix() {
        assert!(decode(b"not an image").expect_err("refused").is_clients());
        // A PNG header claiming 5,000 × 5,000 pixels.
        let mut huge = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        huge.extend_from_slice(&5000u32.to_be_bytes());
        huge.extend_from_slice(&5000u32.to_be_bytes());
        huge.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        let error = decode(&huge).expect_err("refused");
        assert!(
            error.is_clients() && error.to_string().contains("larger"),
            "{error}"
        );
    }
}
