//! Converting a GGUF file to another weight format with llama.cpp's own quantizer. Some formats
//! decode much faster on CPUs than others (llama.cpp has repacked matrix kernels for Q4_0 on
//! AVX2), so a provider may trade a little precision for speed. This is the crate's only direct
//! FFI call: `llama-cpp-2` has no wrapper for it.

use std::ffi::CString;
use std::path::Path;

/// Weight formats a model can be converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// 4-bit, one scale per block of 32: the fastest on CPUs with AVX2.
    Q4_0,
    /// 8-bit: close to lossless from any 4-bit source, twice the size.
    Q8_0,
}

impl WeightFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "q4_0" => Some(Self::Q4_0),
            "q8_0" => Some(Self::Q8_0),
            _ => None,
        }
    }

    /// The conventional file-name tag.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q8_0 => "Q8_0",
        }
    }

    fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        match self {
            Self::Q4_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0,
            Self::Q8_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("the path {0} cannot be passed to llama.cpp (not UTF-8, or contains a NUL byte)")]
    Path(String),
    #[error("llama.cpp could not convert {input} to {format}")]
    Failed { input: String, format: &'static str },
}

fn c_path(path: &Path) -> Result<CString, QuantizeError> {
    path.to_str()
        .and_then(|text| CString::new(text).ok())
        .ok_or_else(|| QuantizeError::Path(path.display().to_string()))
}

/// Writes `input` converted to `format` at `output`. Blocking and CPU-heavy (about a second
/// for a small model): call it from a blocking context, once, and keep the result.
pub fn requantize(
    input: &Path,
    output: &Path,
    format: WeightFormat,
    threads: u32,
) -> Result<(), QuantizeError> {
    let input_c = c_path(input)?;
    let output_c = c_path(output)?;
    // The quantizer logs through llama.cpp's logger, which the backend silences.
    crate::backend();
    #[expect(
        unsafe_code,
        reason = "llama-cpp-2 has no safe wrapper for llama_model_quantize"
    )]
    // SAFETY: `llama_model_quantize_default_params` returns a plain value struct; the paths are
    // valid NUL-terminated strings that outlive the call; `params` lives on this stack frame for
    // the whole call and its pointer fields stay null (their documented default); the backend
    // is initialised above.
    let status = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = format.ftype();
        params.nthread = i32::try_from(threads.max(1)).unwrap_or(1);
        params.allow_requantize = true;
        llama_cpp_sys_2::llama_model_quantize(input_c.as_ptr(), output_c.as_ptr(), &params)
    };
    if status == 0 {
        Ok(())
    } else {
        Err(QuantizeError::Failed {
            input: input.display().to_string(),
            format: format.tag(),
        })
    }
}
