//! ONNX Runtime's environment. ONNX Runtime allows one per process, made from the first
//! library loaded; the voice and the image models share it.

use std::path::Path;
use std::sync::OnceLock;

/// The process's environment, made from `library` on first use (later calls get the same
/// one, whatever library they name); the reason it could not be made otherwise.
pub fn environment(library: &Path) -> Result<&'static ort::environment::Environment, String> {
    static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|error| error.to_string())?
                .with_name("gondola")
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}
