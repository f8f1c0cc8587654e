//! Gondola's wire formats, and nothing else: the shapes that cross a process boundary.
//!
//! - [`clock`]: the wall clock in the units the formats count in.
//! - [`chat`]: chat completion requests (parsed liberally, validated strictly), responses and
//!   stream chunks, in the OpenAI shape that Venice extends.
//! - [`economy`]: the economy's HTTP bodies (ledger, API keys, billing).
//! - [`embeddings`]: embedding requests and the vectors that answer them.
//! - [`images`]: image requests on Venice's and OpenAI's routes, what providers are asked
//!   and answer, image models' limits, style presets.
//! - [`message`]: one message of a conversation, and how its content is read.
//! - [`error`]: API errors, rendered in the OpenAI shape on `/v1` and Venice's on `/api/v1`.
//! - [`models`]: the model catalogue objects.
//! - [`model_id`]: `model:param=value&…` suffixes.
//! - [`speech`]: speech requests, and the voices a model has.
//! - [`sse`]: an incremental, bounded Server-Sent Events parser.
//! - [`transcription`]: transcription uploads, and transcripts in every response format.
//! - [`video`]: Venice's asynchronous video API, video models' limits, and the provider's
//!   job protocol.
//! - [`tools`]: tool calling: offered functions, the model's calls, stream deltas.
//! - [`money`]: USD and DIEM amounts as integers in 18-decimal base units.
//! - [`provider`]: the signed messages between provider nodes and the gateway.
//! - [`sealed`]: chat requests sealed to providers' keys, as client, gateway and provider pass
//!   them on.
//!
//! This crate does no IO and holds no state (it reads the clock, in `clock`). Types here are the formats; internal state
//! elsewhere must not derive its way into them.

pub mod chat;
pub mod clock;
pub mod economy;
pub mod embeddings;
pub mod error;
pub mod images;
pub mod message;
pub mod model_id;
pub mod models;
pub mod money;
pub mod provider;
pub mod sealed;
pub mod speech;
pub mod sse;
pub mod tools;
pub mod transcription;
pub mod video;
