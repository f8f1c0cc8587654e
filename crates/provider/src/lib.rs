//! A Gondola provider node.

pub mod model_store;
