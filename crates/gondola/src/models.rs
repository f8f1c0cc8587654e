//! The embedded models of `serve` and `provider`: the chat model's file (a catalogue model
//! pulled and checked, or a local GGUF, requantized once where asked) and its engine, the
//! embedding model, the voice, the transcription model, the background remover and the
//! upscaler (pulled
//! with ONNX Runtime where they run on it), and the helper programs they need.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use model_store::{ModelStore, Progress};
use std::io::IsTerminal;

use crate::EngineArgs;
use crate::config::{self, FileConfig};

/// Finds the model file for the embedded engine, downloading a catalogue model if needed.
pub(crate) async fn model_file(
    engine: &EngineArgs,
    file: &FileConfig,
    cache: &Path,
) -> anyhow::Result<(PathBuf, String)> {
    let requested = engine
        .model
        .clone()
        .or_else(|| file.provider.model.clone())
        .unwrap_or_else(|| model_store::DEFAULT_MODEL_ID.to_owned());
    let explicit_id = engine
        .model_id
        .clone()
        .or_else(|| file.provider.model_id.clone());
    if let Some(catalogued) = model_store::find_catalogue_model(&requested) {
        let store = ModelStore::new(cache.to_owned(), engine.index_url.clone())?;
        let progress = if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Silent
        };
        let path = store.pull(catalogued, progress).await?;
        return Ok((
            path,
            explicit_id.unwrap_or_else(|| catalogued.id.to_owned()),
        ));
    }
    let path = PathBuf::from(&requested);
    if !(requested.ends_with(".gguf") || requested.contains(std::path::MAIN_SEPARATOR)) {
        let known: Vec<&str> = model_store::CATALOGUE
            .iter()
            .map(|model| model.id)
            .collect();
        bail!(
            "--model {requested:?} is neither a catalogue model ({}) nor a path to a .gguf file",
            known.join(", ")
        );
    }
    model_store::check_gguf_file(&path)?;
    let source = path.clone();
    let path = match engine.requantize {
        Some(format) => requantized(path, format, cache, engine.threads.unwrap_or(2)).await?,
        None => path,
    };
    let id = explicit_id.unwrap_or_else(|| {
        source.file_stem().map_or_else(
            || "local-model".to_owned(),
            |stem| {
                stem.to_string_lossy()
                    .to_lowercase()
                    .replace([' ', ':', '&', '='], "-")
            },
        )
    });
    Ok((path, id))
}

pub(crate) fn parse_weight_format(text: &str) -> Result<engine::WeightFormat, String> {
    engine::WeightFormat::parse(text)
        .ok_or_else(|| format!("{text:?} is not a weight format: use q4_0 or q8_0"))
}

/// The model converted to `format`, made once in the cache and reused afterwards.
pub(crate) async fn requantized(
    source: PathBuf,
    format: engine::WeightFormat,
    cache: &Path,
    threads: u32,
) -> anyhow::Result<PathBuf> {
    let stem = source.file_stem().map_or_else(
        || "model".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let folder = cache.join("models");
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let target = folder.join(format!("{stem}.requantized-{}.gguf", format.tag()));
    if target.exists() {
        return Ok(target);
    }
    let partial = folder.join(format!(".{stem}.requantized-{}.partial", format.tag()));
    let (from, to) = (source.clone(), partial.clone());
    eprintln!(
        "gondola: converting {} to {} (once)",
        source.display(),
        format.tag()
    );
    tokio::task::spawn_blocking(move || engine::requantize(&from, &to, format, threads))
        .await
        .context("the converter panicked")??;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot move the converted model to {}", target.display()))?;
    Ok(target)
}

pub(crate) async fn load_engine(
    engine: &EngineArgs,
    file: &FileConfig,
    path: PathBuf,
) -> anyhow::Result<Arc<engine::Engine>> {
    let config = config::engine_config(
        config::EngineFlags {
            threads: engine.threads,
            parallel: engine.parallel,
            context: engine.context,
        },
        &file.provider.engine,
        path,
    )?;
    let engine = tokio::task::spawn_blocking(move || engine::Engine::load(config))
        .await
        .context("the engine loader panicked")??;
    Ok(Arc::new(engine))
}

/// Finds the embedding model's file: a catalogue model (pulled if needed, converted to GGUF
/// once) or a local .gguf path. Its id: the catalogue id or the file's name.
pub(crate) async fn embedding_model_file(
    requested: &str,
    engine: &EngineArgs,
    cache: &Path,
) -> anyhow::Result<(PathBuf, String)> {
    if let Some(catalogued) = model_store::find_catalogue_model(requested) {
        if catalogued.kind != model_store::ModelKind::Embedding {
            bail!("{requested:?} is a chat model, not an embedding model");
        }
        let store = ModelStore::new(cache.to_owned(), engine.index_url.clone())?;
        let path = store.pull(catalogued, pull_progress()).await?;
        return Ok((path, catalogued.id.to_owned()));
    }
    let path = PathBuf::from(requested);
    if !requested.ends_with(".gguf") {
        bail!(
            "--embedding-model {requested:?} is neither a catalogue embedding model ({}) nor a path to a .gguf file",
            model_store::DEFAULT_EMBEDDING_MODEL_ID
        );
    }
    model_store::check_gguf_file(&path)?;
    Ok((path.clone(), local_model_id(&path)))
}

pub(crate) fn pull_progress() -> Progress {
    if std::io::stderr().is_terminal() {
        Progress::Bar
    } else {
        Progress::Silent
    }
}

/// A local model's id: its file name, lower-cased, with characters ids avoid replaced.
pub(crate) fn local_model_id(path: &Path) -> String {
    path.file_stem().map_or_else(
        || "local-model".to_owned(),
        |stem| {
            stem.to_string_lossy()
                .to_lowercase()
                .replace([' ', ':', '&', '='], "-")
        },
    )
}

/// Loads the voice `requested` (a catalogue voice, pulled if needed) with ONNX Runtime (also
/// pulled), checking that espeak-ng and FFmpeg are there: the voice and its model id.
pub(crate) async fn load_voice(
    requested: &str,
    engine: &EngineArgs,
    cache: &Path,
) -> anyhow::Result<(Arc<voice::Voice>, String)> {
    let Some(catalogued) = model_store::find_catalogue_model(requested)
        .filter(|model| model.kind == model_store::ModelKind::Speech)
    else {
        bail!(
            "{requested:?} is not a catalogue voice ({})",
            model_store::DEFAULT_SPEECH_MODEL_ID
        );
    };
    for program in ["espeak-ng", "ffmpeg"] {
        which(program).with_context(|| {
            format!("{program} is not installed (Debian: apt-get install espeak-ng ffmpeg)")
        })?;
    }
    let (model_path, runtime_library) = pull_onnx_model(catalogued, engine, cache).await?;
    let config = voice::VoiceConfig {
        config_path: model_store::config_path(&model_path),
        model_path,
        runtime_library,
        espeak: which("espeak-ng")?,
        ffmpeg: which("ffmpeg")?,
        name: catalogued
            .id
            .rsplit('-')
            .next()
            .unwrap_or(catalogued.id)
            .to_owned(),
        threads: onnx_threads(engine)?,
    };
    let voice = tokio::task::spawn_blocking(move || voice::Voice::load(config))
        .await
        .context("the voice loader panicked")??;
    Ok((Arc::new(voice), catalogued.id.to_owned()))
}

/// Loads the transcription model `requested` (a catalogue model, pulled if needed), checking
/// that FFmpeg is there: the model and its id.
pub(crate) async fn load_listener(
    requested: &str,
    engine: &EngineArgs,
    cache: &Path,
) -> anyhow::Result<(Arc<transcribe::Listener>, String)> {
    let Some(catalogued) = model_store::find_catalogue_model(requested)
        .filter(|model| model.kind == model_store::ModelKind::Transcription)
    else {
        bail!(
            "{requested:?} is not a catalogue transcription model ({})",
            model_store::DEFAULT_TRANSCRIPTION_MODEL_ID
        );
    };
    let ffmpeg =
        which("ffmpeg").context("ffmpeg is not installed (Debian: apt-get install ffmpeg)")?;
    let store = ModelStore::new(cache.to_owned(), engine.index_url.clone())?;
    let model_path = store.pull(catalogued, pull_progress()).await?;
    let config = transcribe::ListenerConfig {
        model_dir: model_path
            .parent()
            .context("the transcription model has no directory")?
            .to_path_buf(),
        ffmpeg,
        threads: usize::try_from(match engine.threads {
            Some(threads) => threads,
            None => engine::default_decode_threads().get(),
        })
        .unwrap_or(1),
    };
    let listener = tokio::task::spawn_blocking(move || transcribe::Listener::load(config))
        .await
        .context("the transcription loader panicked")??;
    Ok((Arc::new(listener), catalogued.id.to_owned()))
}

/// Pulls a model run by ONNX Runtime, and the runtime's library: both paths.
pub(crate) async fn pull_onnx_model(
    catalogued: &model_store::CatalogueModel,
    engine: &EngineArgs,
    cache: &Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let Some(runtime) = model_store::ONNX_RUNTIME else {
        bail!("no ONNX Runtime is pinned for this platform");
    };
    let store = ModelStore::new(cache.to_owned(), engine.index_url.clone())?;
    let model_path = store.pull(catalogued, pull_progress()).await?;
    let runtime_library = store.pull(&runtime, pull_progress()).await?;
    Ok((model_path, runtime_library))
}

/// The threads an ONNX model runs on: `--threads`, else the engine's default.
pub(crate) fn onnx_threads(engine: &EngineArgs) -> anyhow::Result<std::num::NonZeroU32> {
    match engine.threads {
        Some(threads) => std::num::NonZeroU32::new(threads).context("--threads must be at least 1"),
        None => Ok(engine::default_decode_threads()),
    }
}

/// Loads the background remover `requested` (a catalogue model, pulled if needed) with ONNX
/// Runtime (also pulled): the remover and its model id.
pub(crate) async fn load_remover(
    requested: &str,
    engine: &EngineArgs,
    cache: &Path,
) -> anyhow::Result<(Arc<vision::BackgroundRemover>, String)> {
    load_image_model(
        requested,
        (
            model_store::ModelKind::BackgroundRemoval,
            "background remover",
        ),
        model_store::DEFAULT_BACKGROUND_MODEL_ID,
        engine,
        cache,
        |model_path, runtime_library, threads| {
            vision::BackgroundRemover::load(vision::RemoverConfig {
                model_path,
                runtime_library,
                threads,
            })
        },
    )
    .await
}

/// Loads the upscaler `requested` (a catalogue model, pulled if needed) with ONNX Runtime
/// (also pulled): the upscaler and its model id.
pub(crate) async fn load_upscaler(
    requested: &str,
    engine: &EngineArgs,
    cache: &Path,
) -> anyhow::Result<(Arc<vision::Upscaler>, String)> {
    load_image_model(
        requested,
        (model_store::ModelKind::Upscale, "upscaler"),
        model_store::DEFAULT_UPSCALE_MODEL_ID,
        engine,
        cache,
        |weights_path, runtime_library, threads| {
            vision::Upscaler::load(vision::UpscalerConfig {
                weights_path,
                runtime_library,
                threads,
            })
        },
    )
    .await
}

/// An image model `requested` of `kind` (a catalogue model, named in errors as `what`),
/// pulled with ONNX Runtime if needed and loaded by `load` (model file, runtime library,
/// threads) off the async runtime: the model and its id.
async fn load_image_model<T: Send + 'static>(
    requested: &str,
    (kind, what): (model_store::ModelKind, &str),
    default: &str,
    engine: &EngineArgs,
    cache: &Path,
    load: impl FnOnce(PathBuf, PathBuf, std::num::NonZeroU32) -> Result<T, vision::VisionError>
    + Send
    + 'static,
) -> anyhow::Result<(Arc<T>, String)> {
    let Some(catalogued) =
        model_store::find_catalogue_model(requested).filter(|model| model.kind == kind)
    else {
        bail!("{requested:?} is not a catalogue {what} ({default})");
    };
    let (model_path, runtime_library) = pull_onnx_model(catalogued, engine, cache).await?;
    let threads = onnx_threads(engine)?;
    let model = tokio::task::spawn_blocking(move || load(model_path, runtime_library, threads))
        .await
        .with_context(|| format!("the {what}'s loader panicked"))??;
    Ok((Arc::new(model), catalogued.id.to_owned()))
}

/// `program`'s path on the PATH.
pub(crate) fn which(program: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{program} is not on the PATH"))
}

pub(crate) async fn load_embedder(
    engine: &EngineArgs,
    path: PathBuf,
) -> anyhow::Result<Arc<engine::Embedder>> {
    let mut config = engine::EmbedderConfig::new(path);
    if let Some(threads) = engine.threads {
        config.threads =
            std::num::NonZeroU32::new(threads).context("--threads must be at least 1")?;
    }
    let embedder = tokio::task::spawn_blocking(move || engine::Embedder::load(config))
        .await
        .context("the embedding engine loader panicked")??;
    Ok(Arc::new(embedder))
}
