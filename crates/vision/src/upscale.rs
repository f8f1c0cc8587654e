//! [`Upscaler`]: Real-ESRGAN's compact network (`realesr-animevideov3`), as its ncnn files
//! describe it, run by ONNX Runtime. The network's graph is read from ncnn's text form
//! (`.param`) and its fp16 weights (`.bin`), and built in ONNX Runtime with its model editor:
//! each ncnn layer becomes the ONNX operator that computes the same thing. The package ships
//! one graph per factor over the same weights (2× is 4× followed by a bicubic halving); both
//! are loaded.
//!
//! An image is enlarged in tiles of [`TILE`] pixels, each read with [`TILE_PAD`] pixels of its
//! neighbours so that no seam shows, which holds the memory of one run to a few tens of
//! megabytes whatever the image's size. Alpha, where there is any, is enlarged by Lanczos
//! resampling beside the colour. Blocking: call it off the async runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};
use ort::editor::{Graph, Model, Node, ONNX_DOMAIN, Opset};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::session::Session;
use ort::value::{Outlet, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType};

use crate::{VisionError, decode};

/// The side of the square an image is cut into, in its own pixels.
const TILE: u32 = 256;
/// The pixels of its neighbours each tile is read with (the network sees 17 pixels around
/// each one; even, so that the 2× graph's halving keeps the seams on whole pixels).
const TILE_PAD: u32 = 18;
/// ncnn's first line.
const NCNN_MAGIC: &str = "7767517";
/// The tag before fp16 weights in an ncnn `.bin`.
const NCNN_FP16_TAG: u32 = 0x0130_6B47;
/// ONNX opset the graphs are built in.
const OPSET: u32 = 17;
/// The graph's input and output.
const INPUT: &str = "image";
const OUTPUT: &str = "upscaled";
/// Most pixels an enlarged image may have (Venice's bound: 4096 × 4096).
pub const MAX_UPSCALED_PIXELS: u64 = 16_777_216;
/// Most layers a `.param` file may list (the compact networks have 41).
const MAX_LAYERS: usize = 4_096;

/// Where an upscaler's files are: the factors' graphs and the weights they share.
pub struct UpscalerConfig {
    /// `<name>-x4.bin`; `<name>-x4.param` and `<name>-x2.param` lie beside it.
    pub weights_path: PathBuf,
    /// `libonnxruntime.so`, pulled beside the model.
    pub runtime_library: PathBuf,
    pub threads: std::num::NonZeroU32,
}

impl UpscalerConfig {
    /// The graph for `scale`, beside the weights.
    fn param_path(&self, scale: u32) -> PathBuf {
        let stem = self
            .weights_path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = stem.strip_suffix("-x4").unwrap_or(&stem);
        self.weights_path
            .with_file_name(format!("{base}-x{scale}.param"))
    }
}

/// Real-ESRGAN, loaded: a session per factor, one image at a time each.
pub struct Upscaler {
    double: Mutex<Session>,
    quadruple: Mutex<Session>,
    name: String,
}

impl Upscaler {
    /// Loads ONNX Runtime (once per process) and builds both factors' graphs. Blocking.
    pub fn load(config: UpscalerConfig) -> Result<Self, VisionError> {
        let environment =
            onnx::environment(&config.runtime_library).map_err(|reason| VisionError::Runtime {
                path: config.runtime_library.clone(),
                reason,
            })?;
        let weights = std::fs::read(&config.weights_path).map_err(|error| VisionError::Model {
            path: config.weights_path.clone(),
            reason: error.to_string(),
        })?;
        let threads = usize::try_from(config.threads.get()).unwrap_or(1);
        let session = |scale: u32| -> Result<Mutex<Session>, VisionError> {
            let path = config.param_path(scale);
            let failed = |reason: String| VisionError::Model {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&path).map_err(|error| failed(error.to_string()))?;
            let network = Network::parse(&text, &weights).map_err(&failed)?;
            let builder = Session::builder(environment)
                .map_err(|error| failed(error.to_string()))?
                .with_intra_threads(threads)
                .map_err(|error| failed(error.to_string()))?;
            let session = network
                .into_model()
                .and_then(|model| model.into_session(&builder))
                .map_err(|error| failed(error.to_string()))?;
            Ok(Mutex::new(session))
        };
        let upscaler = Self {
            double: session(2)?,
            quadruple: session(4)?,
            name: config
                .weights_path
                .file_stem()
                .map(|stem| stem.to_string_lossy().trim_end_matches("-x4").to_owned())
                .unwrap_or_else(|| "realesr".into()),
        };
        tracing::info!(model = %upscaler.name, threads, "upscaler loaded");
        Ok(upscaler)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `image` (PNG, JPEG or WebP bytes) `scale` (2 or 4) times as wide and tall, as a PNG.
    pub fn upscale(&self, image: &[u8], scale: u32) -> Result<Vec<u8>, VisionError> {
        let session = match scale {
            2 => &self.double,
            4 => &self.quadruple,
            _ => {
                return Err(VisionError::Input(format!(
                    "an image is upscaled 2 or 4 times, not {scale}"
                )));
            }
        };
        let picture = decode(image)?;
        let (width, height) = (picture.width(), picture.height());
        if u64::from(width * scale) * u64::from(height * scale) > MAX_UPSCALED_PIXELS {
            return Err(VisionError::Input(format!(
                "a {width}x{height} image upscaled {scale} times would pass \
                 {MAX_UPSCALED_PIXELS} pixels"
            )));
        }
        let colour = picture.to_rgb8();
        let mut session = session
            .lock()
            .map_err(|_| VisionError::Inference("the model's session was poisoned".into()))?;
        let enlarged = enlarge(&mut session, &colour, scale)?;
        drop(session);
        let out = if picture.color().has_alpha() {
            let rgba = picture.to_rgba8();
            let alpha =
                GrayImage::from_fn(width, height, |x, y| image::Luma([rgba.get_pixel(x, y)[3]]));
            let alpha = image::imageops::resize(
                &alpha,
                width * scale,
                height * scale,
                FilterType::Lanczos3,
            );
            let mut both = RgbaImage::new(width * scale, height * scale);
            for ((target, colour), alpha) in
                both.pixels_mut().zip(enlarged.pixels()).zip(alpha.pixels())
            {
                *target = image::Rgba([colour[0], colour[1], colour[2], alpha[0]]);
            }
            DynamicImage::ImageRgba8(both)
        } else {
            DynamicImage::ImageRgb8(enlarged)
        };
        let mut png = Vec::new();
        out.write_with_encoder(image::codecs::png::PngEncoder::new_with_quality(
            &mut png,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Adaptive,
        ))
        .map_err(|error| {
            VisionError::Inference(format!("the PNG could not be written: {error}"))
        })?;
        Ok(png)
    }
}

/// `picture` enlarged `scale` times, tile by tile.
fn enlarge(session: &mut Session, picture: &RgbImage, scale: u32) -> Result<RgbImage, VisionError> {
    let failed = |error: ort::Error| VisionError::Inference(error.to_string());
    let (width, height) = picture.dimensions();
    let mut out = RgbImage::new(width * scale, height * scale);
    for top in (0..height).step_by(TILE as usize) {
        for left in (0..width).step_by(TILE as usize) {
            // The tile, and the region read for it: the tile with its neighbours' margin.
            let (tile_width, tile_height) = (TILE.min(width - left), TILE.min(height - top));
            let read_left = left.saturating_sub(TILE_PAD);
            let read_top = top.saturating_sub(TILE_PAD);
            let read_right = (left + tile_width + TILE_PAD).min(width);
            let read_bottom = (top + tile_height + TILE_PAD).min(height);
            let (read_width, read_height) = (read_right - read_left, read_bottom - read_top);
            let plane = (read_width * read_height) as usize;
            let mut input = vec![0f32; 3 * plane];
            for y in 0..read_height {
                for x in 0..read_width {
                    let pixel = picture.get_pixel(read_left + x, read_top + y);
                    let index = (y * read_width + x) as usize;
                    for channel in 0..3 {
                        input[channel * plane + index] = f32::from(pixel[channel]) / 255.0;
                    }
                }
            }
            let tensor = Tensor::from_array((
                [1usize, 3, read_height as usize, read_width as usize],
                input,
            ))
            .map_err(failed)?;
            let outputs = session.run(ort::inputs![INPUT => tensor]).map_err(failed)?;
            let (shape, values) = outputs[OUTPUT]
                .try_extract_tensor::<f32>()
                .map_err(failed)?;
            let (out_width, out_height) = (read_width * scale, read_height * scale);
            if shape.len() != 4
                || shape[1] != 3
                || shape[2] != i64::from(out_height)
                || shape[3] != i64::from(out_width)
            {
                return Err(VisionError::Inference(format!(
                    "the model answered a {shape:?} tensor for a {read_width}×{read_height} tile"
                )));
            }
            let out_plane = (out_width * out_height) as usize;
            let (skip_x, skip_y) = ((left - read_left) * scale, (top - read_top) * scale);
            for y in 0..tile_height * scale {
                for x in 0..tile_width * scale {
                    let index = ((skip_y + y) * out_width + skip_x + x) as usize;
                    let channel = |c: usize| {
                        (values[c * out_plane + index] * 255.0)
                            .round()
                            .clamp(0.0, 255.0) as u8
                    };
                    out.put_pixel(
                        left * scale + x,
                        top * scale + y,
                        image::Rgb([channel(0), channel(1), channel(2)]),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// One ncnn layer's parameters (`key=value`, keys being small integers).
type Params = HashMap<i32, String>;

/// What an ncnn layer computes, in the terms of its ONNX operator.
#[derive(Debug, Clone, PartialEq)]
enum Layer {
    Conv {
        outputs: usize,
        inputs: usize,
        kernel: usize,
        pad: usize,
        weights: Vec<f32>,
        bias: Vec<f32>,
    },
    PRelu {
        slopes: Vec<f32>,
    },
    DepthToSpace {
        block: usize,
    },
    Resize {
        mode: &'static str,
        height_scale: f32,
        width_scale: f32,
    },
    Add,
}

/// An ncnn network as ONNX nodes: each layer with the blobs it reads and writes.
#[derive(Debug)]
struct Network {
    layers: Vec<(String, Layer, Vec<String>, String)>,
    input: String,
    output: String,
}

impl Network {
    /// Reads an ncnn `.param` (text) and the `.bin` its layers' weights come from, in order.
    /// Only what the compact Real-ESRGAN networks use is taken: anything else is named.
    fn parse(param: &str, bin: &[u8]) -> Result<Self, String> {
        let mut lines = param.lines();
        if lines.next().map(str::trim) != Some(NCNN_MAGIC) {
            return Err("not an ncnn .param file".into());
        }
        let counts = lines.next().ok_or("the layer count is missing")?;
        let layer_count: usize = counts
            .split_whitespace()
            .next()
            .and_then(|count| count.parse().ok())
            .filter(|count| *count <= MAX_LAYERS)
            .ok_or("the layer count cannot be read")?;
        let mut weights = Weights { bin, at: 0 };
        // A blob's name, with what `Split` copies replaced by what it copies.
        let mut alias: HashMap<String, String> = HashMap::new();
        // Each blob's channels, to size the convolutions' weights.
        let mut channels: HashMap<String, usize> = HashMap::new();
        let mut network = Self {
            layers: Vec::new(),
            input: String::new(),
            output: String::new(),
        };
        let mut read = 0;
        for line in lines
            .filter(|line| !line.trim().is_empty())
            .take(layer_count)
        {
            read += 1;
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [kind, name, bottoms, tops, rest @ ..] = fields.as_slice() else {
                return Err(format!("a layer cannot be read: {line:?}"));
            };
            let bottoms: usize = bottoms.parse().map_err(|_| format!("{name}: bad inputs"))?;
            let tops: usize = tops.parse().map_err(|_| format!("{name}: bad outputs"))?;
            if rest.len() < bottoms + tops {
                return Err(format!("{name}: fewer blobs than it says"));
            }
            let resolve = |blob: &str| alias.get(blob).cloned().unwrap_or_else(|| blob.to_owned());
            let ins: Vec<String> = rest[..bottoms].iter().map(|blob| resolve(blob)).collect();
            let outs: Vec<String> = rest[bottoms..bottoms + tops]
                .iter()
                .map(|blob| (*blob).to_owned())
                .collect();
            let params = params(&rest[bottoms + tops..])?;
            let single = |what: &[String]| -> Result<String, String> {
                match what {
                    [one] => Ok(one.clone()),
                    _ => Err(format!("{name}: expected one blob, found {}", what.len())),
                }
            };
            let layer = match *kind {
                "Input" => {
                    network.input = single(&outs)?;
                    channels.insert(network.input.clone(), 3);
                    continue;
                }
                "Split" => {
                    let source = single(&ins)?;
                    for out in &outs {
                        alias.insert(out.clone(), source.clone());
                    }
                    continue;
                }
                "Convolution" => {
                    only(name, &params, &[0, 1, 4, 5, 6])?;
                    let outputs = usize_param(&params, 0, 0)?;
                    let kernel = usize_param(&params, 1, 1)?;
                    let pad = usize_param(&params, 4, 0)?;
                    let size = usize_param(&params, 6, 0)?;
                    let inputs = channels
                        .get(&single(&ins)?)
                        .copied()
                        .ok_or_else(|| format!("{name}: its input's channels are unknown"))?;
                    if outputs == 0 || size != outputs * inputs * kernel * kernel {
                        return Err(format!(
                            "{name}: {size} weights for {outputs}×{inputs}×{kernel}×{kernel}"
                        ));
                    }
                    let conv_weights = weights.tagged(size)?;
                    let bias = if usize_param(&params, 5, 0)? == 1 {
                        weights.raw(outputs)?
                    } else {
                        vec![0.0; outputs]
                    };
                    Layer::Conv {
                        outputs,
                        inputs,
                        kernel,
                        pad,
                        weights: conv_weights,
                        bias,
                    }
                }
                "PReLU" => {
                    only(name, &params, &[0])?;
                    let count = usize_param(&params, 0, 0)?;
                    Layer::PRelu {
                        slopes: weights.raw(count)?,
                    }
                }
                "PixelShuffle" => {
                    only(name, &params, &[0])?;
                    Layer::DepthToSpace {
                        block: usize_param(&params, 0, 1)?,
                    }
                }
                "Interp" => {
                    only(name, &params, &[0, 1, 2])?;
                    let mode = match usize_param(&params, 0, 0)? {
                        1 => "nearest",
                        2 => "linear",
                        3 => "cubic",
                        other => return Err(format!("{name}: resize type {other}")),
                    };
                    Layer::Resize {
                        mode,
                        height_scale: float_param(&params, 1, 1.0)?,
                        width_scale: float_param(&params, 2, 1.0)?,
                    }
                }
                "BinaryOp" => {
                    only(name, &params, &[0])?;
                    if usize_param(&params, 0, 0)? != 0 || ins.len() != 2 {
                        return Err(format!("{name}: only the sum of two blobs is taken"));
                    }
                    Layer::Add
                }
                other => return Err(format!("{name}: layer type {other} is not taken")),
            };
            let out = single(&outs)?;
            let first = ins.first().cloned().unwrap_or_default();
            let out_channels = match &layer {
                Layer::Conv { outputs, .. } => *outputs,
                Layer::DepthToSpace { block } => {
                    channels.get(&first).copied().unwrap_or(0) / (block * block).max(1)
                }
                _ => channels.get(&first).copied().unwrap_or(0),
            };
            channels.insert(out.clone(), out_channels);
            network.output.clone_from(&out);
            network.layers.push(((*name).to_owned(), layer, ins, out));
        }
        if read != layer_count || network.input.is_empty() || network.layers.is_empty() {
            return Err(format!(
                "the file lists {read} of its {layer_count} layers, or no input"
            ));
        }
        if weights.at != bin.len() {
            return Err(format!(
                "the weights file holds {} bytes; the graph reads {}",
                bin.len(),
                weights.at
            ));
        }
        if channels.get(&network.output) != Some(&3) {
            return Err("the network does not end in an RGB image".into());
        }
        Ok(network)
    }

    /// The network as an ONNX model: input `image`, output `upscaled`, both (1, 3, h, w).
    fn into_model(self) -> ort::Result<Model> {
        let image_type = |height: &str, width: &str| ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape: Shape::new([1, 3, -1, -1]),
            dimension_symbols: SymbolicDimensions::new([
                String::new(),
                String::new(),
                height.to_owned(),
                width.to_owned(),
            ]),
        };
        let mut graph = Graph::new()?;
        graph.set_inputs([Outlet::new(INPUT, image_type("height", "width"))])?;
        graph.set_outputs([Outlet::new(OUTPUT, image_type("out_height", "out_width"))])?;
        let rename = |blob: &str| -> String {
            if blob == self.input {
                INPUT.to_owned()
            } else if blob == self.output {
                OUTPUT.to_owned()
            } else {
                blob.to_owned()
            }
        };
        for (name, layer, ins, out) in self.layers {
            let ins: Vec<String> = ins.iter().map(|blob| rename(blob)).collect();
            let out = rename(&out);
            let node = match layer {
                Layer::Conv {
                    outputs,
                    inputs,
                    kernel,
                    pad,
                    weights,
                    bias,
                } => {
                    let weight_name = format!("{name}.weight");
                    let bias_name = format!("{name}.bias");
                    graph.add_initializer(
                        &weight_name,
                        initializer(&[outputs, inputs, kernel, kernel], &weights)?,
                        false,
                    )?;
                    graph.add_initializer(&bias_name, initializer(&[outputs], &bias)?, false)?;
                    let (kernel, pad) = (kernel as i64, pad as i64);
                    Node::new(
                        "Conv",
                        ONNX_DOMAIN,
                        &name,
                        [ins[0].as_str(), &weight_name, &bias_name],
                        [out.as_str()],
                        [
                            Attribute::new("kernel_shape", vec![kernel, kernel])?,
                            Attribute::new("pads", vec![pad, pad, pad, pad])?,
                            Attribute::new("strides", vec![1i64, 1])?,
                            Attribute::new("dilations", vec![1i64, 1])?,
                            Attribute::new("group", 1i64)?,
                        ],
                    )?
                }
                Layer::PRelu { slopes } => {
                    let slope_name = format!("{name}.slope");
                    graph.add_initializer(
                        &slope_name,
                        initializer(&[slopes.len(), 1, 1], &slopes)?,
                        false,
                    )?;
                    Node::new(
                        "PRelu",
                        ONNX_DOMAIN,
                        &name,
                        [ins[0].as_str(), &slope_name],
                        [out.as_str()],
                        [],
                    )?
                }
                Layer::DepthToSpace { block } => Node::new(
                    "DepthToSpace",
                    ONNX_DOMAIN,
                    &name,
                    [ins[0].as_str()],
                    [out.as_str()],
                    [
                        Attribute::new("blocksize", block as i64)?,
                        Attribute::new("mode", "CRD".to_owned())?,
                    ],
                )?,
                Layer::Resize {
                    mode,
                    height_scale,
                    width_scale,
                } => {
                    let scales_name = format!("{name}.scales");
                    graph.add_initializer(
                        &scales_name,
                        initializer(&[4], &[1.0, 1.0, height_scale, width_scale])?,
                        false,
                    )?;
                    // As ncnn (and PyTorch) resize: nearest takes the pixel at or before,
                    // the others sample at pixel centres; bicubic with a = -0.75.
                    let mut attributes = vec![Attribute::new("mode", mode.to_owned())?];
                    if mode == "nearest" {
                        attributes.push(Attribute::new(
                            "coordinate_transformation_mode",
                            "asymmetric".to_owned(),
                        )?);
                        attributes.push(Attribute::new("nearest_mode", "floor".to_owned())?);
                    } else {
                        attributes.push(Attribute::new(
                            "coordinate_transformation_mode",
                            "half_pixel".to_owned(),
                        )?);
                        attributes.push(Attribute::new("cubic_coeff_a", -0.75f32)?);
                    }
                    Node::new(
                        "Resize",
                        ONNX_DOMAIN,
                        &name,
                        [ins[0].as_str(), "", &scales_name],
                        [out.as_str()],
                        attributes,
                    )?
                }
                Layer::Add => Node::new(
                    "Add",
                    ONNX_DOMAIN,
                    &name,
                    [ins[0].as_str(), ins[1].as_str()],
                    [out.as_str()],
                    [],
                )?,
            };
            graph.add_node(node)?;
        }
        let mut model = Model::new([Opset::new(ONNX_DOMAIN, OPSET)?])?;
        model.set_graph(graph)?;
        Ok(model)
    }
}

/// A tensor owned by ONNX Runtime (as an initializer must be), holding `values`.
fn initializer(shape: &[usize], values: &[f32]) -> ort::Result<Tensor<f32>> {
    let dimensions: Vec<i64> = shape.iter().map(|side| *side as i64).collect();
    let mut tensor = Tensor::<f32>::new(&Allocator::default(), dimensions)?;
    let (_, data) = tensor.extract_tensor_mut();
    if data.len() != values.len() {
        return Err(ort::Error::new(format!(
            "{} values for a tensor of {}",
            values.len(),
            data.len()
        )));
    }
    data.copy_from_slice(values);
    Ok(tensor)
}

/// An ncnn `.bin`, read in order.
struct Weights<'a> {
    bin: &'a [u8],
    at: usize,
}

impl Weights<'_> {
    fn take(&mut self, bytes: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(bytes)
            .filter(|end| *end <= self.bin.len())
            .ok_or("the weights file ends early")?;
        let taken = &self.bin[self.at..end];
        self.at = end;
        Ok(taken)
    }

    /// `count` fp32 values with no tag (ncnn's biases and slopes).
    fn raw(&mut self, count: usize) -> Result<Vec<f32>, String> {
        Ok(self
            .take(count.checked_mul(4).ok_or("too many weights")?)?
            .chunks_exact(4)
            .map(|value| f32::from_le_bytes([value[0], value[1], value[2], value[3]]))
            .collect())
    }

    /// `count` values after a tag saying how they are stored: fp32 (tag 0) or fp16 (padded to
    /// four bytes).
    fn tagged(&mut self, count: usize) -> Result<Vec<f32>, String> {
        let tag = self.take(4)?;
        match u32::from_le_bytes([tag[0], tag[1], tag[2], tag[3]]) {
            0 => self.raw(count),
            NCNN_FP16_TAG => {
                let bytes = count.checked_mul(2).ok_or("too many weights")?;
                let values = self.take(bytes.next_multiple_of(4))?[..bytes]
                    .chunks_exact(2)
                    .map(|value| half::f16::from_le_bytes([value[0], value[1]]).to_f32())
                    .collect();
                Ok(values)
            }
            other => Err(format!("weights stored as {other:#x} are not taken")),
        }
    }
}

/// A layer's `key=value` parameters.
fn params(fields: &[&str]) -> Result<Params, String> {
    fields
        .iter()
        .map(|field| {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| format!("a parameter cannot be read: {field:?}"))?;
            let key = key
                .parse()
                .map_err(|_| format!("a parameter's key cannot be read: {field:?}"))?;
            Ok((key, value.to_owned()))
        })
        .collect()
}

/// Refuses a layer with parameters beside `known`: they would change what it computes.
fn only(layer: &str, params: &Params, known: &[i32]) -> Result<(), String> {
    match params.keys().find(|key| !known.contains(key)) {
        Some(key) => Err(format!("{layer}: parameter {key} is not taken")),
        None => Ok(()),
    }
}

fn usize_param(params: &Params, key: i32, default: usize) -> Result<usize, String> {
    params.get(&key).map_or(Ok(default), |value| {
        value
            .parse()
            .map_err(|_| format!("parameter {key} is not a count: {value:?}"))
    })
}

fn float_param(params: &Params, key: i32, default: f32) -> Result<f32, String> {
    params.get(&key).map_or(Ok(default), |value| {
        value
            .parse()
            .map_err(|_| format!("parameter {key} is not a number: {value:?}"))
    })
}

/// Where `weights_path`'s graph for `scale` lies, for callers that check the files.
pub fn param_path(weights_path: &Path, scale: u32) -> PathBuf {
    UpscalerConfig {
        weights_path: weights_path.to_owned(),
        runtime_library: PathBuf::new(),
        threads: std::num::NonZeroU32::MIN,
    }
    .param_path(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp16_tagged(values: &[f32]) -> Vec<u8> {
        let mut bytes = NCNN_FP16_TAG.to_le_bytes().to_vec();
        for value in values {
            bytes.extend_from_slice(&half::f16::from_f32(*value).to_le_bytes());
        }
        while !bytes.len().is_multiple_of(4) {
            bytes.push(0);
        }
        bytes
    }

    fn raw(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect()
    }

    /// A 1×1 convolution from 3 channels to 3, a PReLU and the input added back.
    const PARAM: &str = "7767517\n\
        5 6\n\
        Input in 0 1 data 0=8 1=8 2=3\n\
        Split split 1 2 data a b\n\
        Convolution conv 1 1 a c 0=3 1=1 5=1 6=9\n\
        PReLU act 1 1 c d 0=3\n\
        BinaryOp add 2 1 d b out 0=0\n";

    fn bin(weights: &[f32]) -> Vec<u8> {
        let mut bin = fp16_tagged(weights);
        bin.extend(raw(&[0.5, 0.0, -1.0]));
        bin.extend(raw(&[0.25, 0.25, 0.25]));
        bin
    }

    #[test]
    fn the_layers_their_weights_and_the_split_blobs_are_read() {
        let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let network = Network::parse(PARAM, &bin(&identity)).expect("parsed");
        assert_eq!(network.input, "data");
        assert_eq!(network.output, "out");
        let (_, conv, ins, _) = &network.layers[0];
        assert_eq!(
            ins,
            &["data".to_owned()],
            "the split's copy names its source"
        );
        assert_eq!(
            conv,
            &Layer::Conv {
                outputs: 3,
                inputs: 3,
                kernel: 1,
                pad: 0,
                weights: identity.to_vec(),
                bias: vec![0.5, 0.0, -1.0],
            }
        );
        assert_eq!(
            network.layers[1].1,
            Layer::PRelu {
                slopes: vec![0.25; 3]
            }
        );
        assert_eq!(network.layers[2].2, ["d".to_owned(), "data".to_owned()]);
    }

    #[test]
    fn odd_fp16_counts_are_padded_to_four_bytes() {
        let mut bin = fp16_tagged(&[1.5, -2.0, 0.5]);
        assert_eq!(bin.len(), 4 + 8);
        bin.extend(raw(&[7.0]));
        let mut weights = Weights { bin: &bin, at: 0 };
        assert_eq!(weights.tagged(3).expect("read"), [1.5, -2.0, 0.5]);
        assert_eq!(weights.raw(1).expect("read"), [7.0]);
        assert_eq!(weights.at, bin.len());
    }

    #[test]
    fn what_would_compute_something_else_is_refused() {
        let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        // A stride, which the graph would not carry.
        let strided = PARAM.replace("6=9", "6=9 3=2");
        let error = Network::parse(&strided, &bin(&identity)).expect_err("refused");
        assert!(error.contains("parameter 3"), "{error}");
        // A layer type not taken.
        let pooled = PARAM.replace("PReLU act 1 1 c d 0=3", "Pooling act 1 1 c d 0=3");
        let error = Network::parse(&pooled, &bin(&identity)).expect_err("refused");
        assert!(error.contains("Pooling"), "{error}");
        // Weights left over, or too few.
        let mut long = bin(&identity);
        long.extend([0; 4]);
        assert!(
            Network::parse(PARAM, &long)
                .expect_err("refused")
                .contains("holds")
        );
        let short = bin(&identity)[..20].to_vec();
        assert!(
            Network::parse(PARAM, &short)
                .expect_err("refused")
                .contains("ends early")
        );
        assert!(Network::parse("7767516\n1 1\n", &[]).is_err());
    }

    #[test]
    fn the_graph_for_a_factor_lies_beside_the_weights() {
        let weights = Path::new("/models/realesr/realesr-animevideov3-x4.bin");
        assert_eq!(
            param_path(weights, 2),
            Path::new("/models/realesr/realesr-animevideov3-x2.param")
        );
        assert_eq!(
            param_path(weights, 4),
            Path::new("/models/realesr/realesr-animevideov3-x4.param")
        );
    }
}
