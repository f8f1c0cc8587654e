//! Gondola's end-to-end tests: the real `gondola` binary on port 0, the real default model,
//! real HTTP on loopback. Fault-injecting providers stand in only where a real engine cannot
//! be made to fail on cue.

mod background;
mod chain_cli;
mod chaos;
mod cluster;
mod contract;
mod economy;
mod embeddings;
mod engine_direct;
mod failover;
mod faults;
mod framing;
mod image_engines;
mod images;
mod ledger_cli;
mod ledger_crash;
mod network;
mod oblivious;
mod privacy;
mod private_path;
mod prompt_cache;
mod sdk;
mod sealed;
mod security;
mod serve;
mod speech;
mod support;
mod tidy;
mod tls;
mod tokens;
mod transcription;
mod upscale;
mod video;
mod video_engine;
mod web;
