//! Turns a BERT sentence-embedding model as Hugging Face ships it (safetensors weights, the
//! WordPiece `vocab.txt`, `config.json` and `tokenizer_config.json`) into a GGUF file that
//! llama.cpp loads as architecture `bert` with mean pooling.
//!
//! The conversion is what llama.cpp's own `convert_hf_to_gguf.py` does for `BertModel`: tensor
//! names mapped to llama.cpp's, dimensions listed fastest first, the vocabulary in llama.cpp's
//! word-start form (`▁word` for a word's first piece, `##piece` without its marks, `[SPECIAL]`
//! as is). Weights are copied as they are (32-bit floats), so the output is exact, and the
//! bytes written depend on the inputs only: the same inputs give the same file, whose digest
//! is pinned like a downloaded model's.
//!
//! The GGUF writer here is the few lines the format needs (a header, typed key-value pairs,
//! tensor descriptions, aligned data); no maintained Rust crate writes GGUF without pulling in
//! a tensor library.

use std::io::{self, Write};

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

/// Data alignment in the file (llama.cpp's default, `general.alignment` absent).
const ALIGNMENT: u64 = 32;
/// llama.cpp's pooling type for the mean of the tokens' states.
const POOLING_MEAN: u32 = 1;
/// `general.file_type` for a file whose weights are all 32-bit floats.
const FILE_TYPE_ALL_F32: u32 = 0;
/// ggml's tensor type for 32-bit floats.
const GGML_TYPE_F32: u32 = 0;
/// llama.cpp's token types.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;

/// Why a model could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("the model's {file} is not valid: {reason}")]
    Input { file: &'static str, reason: String },
    #[error("the weights hold a tensor this converter does not know: {0}")]
    UnknownTensor(String),
    #[error("the tensor {name} is {dtype:?}; only 32-bit float weights are converted")]
    UnsupportedType { name: String, dtype: Dtype },
    #[error("the weights lack the tensor {0}")]
    MissingTensor(String),
    #[error("cannot write the converted model: {0}")]
    Write(#[from] io::Error),
}

/// A BERT model's files, read into memory (all-MiniLM-L6-v2's weights are 91 MB).
pub struct BertFiles<'a> {
    /// What `general.name` will say.
    pub name: &'a str,
    pub weights: &'a [u8],
    pub vocab: &'a [u8],
    pub config: &'a [u8],
    pub tokenizer_config: &'a [u8],
}

#[derive(Deserialize)]
struct BertConfig {
    hidden_size: u32,
    intermediate_size: u32,
    num_hidden_layers: u32,
    num_attention_heads: u32,
    layer_norm_eps: f32,
    max_position_embeddings: u32,
    #[serde(default = "one")]
    type_vocab_size: u32,
    vocab_size: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct TokenizerConfig {
    #[serde(default = "yes")]
    do_lower_case: bool,
    #[serde(default = "unk")]
    unk_token: String,
    #[serde(default = "sep")]
    sep_token: String,
    #[serde(default = "pad_token")]
    pad_token: String,
    #[serde(default = "cls")]
    cls_token: String,
    #[serde(default = "mask")]
    mask_token: String,
}

fn yes() -> bool {
    true
}
fn unk() -> String {
    "[UNK]".into()
}
fn sep() -> String {
    "[SEP]".into()
}
fn pad_token() -> String {
    "[PAD]".into()
}
fn cls() -> String {
    "[CLS]".into()
}
fn mask() -> String {
    "[MASK]".into()
}

/// Writes the GGUF form of `files` to `output`: the number of bytes written.
pub fn bert_to_gguf(files: &BertFiles<'_>, output: impl Write) -> Result<u64, ConvertError> {
    let config: BertConfig =
        serde_json::from_slice(files.config).map_err(|error| ConvertError::Input {
            file: "config.json",
            reason: error.to_string(),
        })?;
    let tokenizer: TokenizerConfig =
        serde_json::from_slice(files.tokenizer_config).map_err(|error| ConvertError::Input {
            file: "tokenizer_config.json",
            reason: error.to_string(),
        })?;
    let vocab = std::str::from_utf8(files.vocab).map_err(|error| ConvertError::Input {
        file: "vocab.txt",
        reason: error.to_string(),
    })?;
    let pieces: Vec<&str> = vocab.lines().collect();
    if pieces.len() != config.vocab_size as usize {
        return Err(ConvertError::Input {
            file: "vocab.txt",
            reason: format!(
                "it holds {} pieces and config.json says {}",
                pieces.len(),
                config.vocab_size
            ),
        });
    }
    let id_of = |piece: &str, role: &'static str| -> Result<u32, ConvertError> {
        pieces
            .iter()
            .position(|known| *known == piece)
            .and_then(|index| u32::try_from(index).ok())
            .ok_or_else(|| ConvertError::Input {
                file: "vocab.txt",
                reason: format!("it lacks the {role} token {piece:?}"),
            })
    };
    let unk_id = id_of(&tokenizer.unk_token, "unknown")?;
    let sep_id = id_of(&tokenizer.sep_token, "separator")?;
    let pad_id = id_of(&tokenizer.pad_token, "padding")?;
    let cls_id = id_of(&tokenizer.cls_token, "classifier")?;
    let mask_id = id_of(&tokenizer.mask_token, "mask")?;
    let special = [unk_id, sep_id, pad_id, cls_id, mask_id];

    let tokens: Vec<String> = pieces.iter().map(|piece| word_start_form(piece)).collect();
    let token_types: Vec<i32> = (0..pieces.len())
        .map(|index| {
            if special.iter().any(|id| *id as usize == index) {
                TOKEN_CONTROL
            } else {
                TOKEN_NORMAL
            }
        })
        .collect();

    let weights = SafeTensors::deserialize(files.weights).map_err(|error| ConvertError::Input {
        file: "model.safetensors",
        reason: error.to_string(),
    })?;
    let mut tensors = Vec::new();
    for (name, view) in weights.iter() {
        let Some(target) = gguf_tensor_name(name)? else {
            continue;
        };
        if view.dtype() != Dtype::F32 {
            return Err(ConvertError::UnsupportedType {
                name: name.to_owned(),
                dtype: view.dtype(),
            });
        }
        // GGUF lists dimensions fastest first: the reverse of the row-major shape.
        let dims: Vec<u64> = view.shape().iter().rev().map(|dim| *dim as u64).collect();
        tensors.push((target, dims, view.data()));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for required in [
        "token_embd.weight",
        "position_embd.weight",
        "token_embd_norm.weight",
    ] {
        if !tensors.iter().any(|(name, _, _)| name == required) {
            return Err(ConvertError::MissingTensor(required.to_owned()));
        }
    }

    let arch = "bert";
    let metadata = vec![
        ("general.architecture", Value::Str(arch.into())),
        ("general.name", Value::Str(files.name.into())),
        ("general.file_type", Value::U32(FILE_TYPE_ALL_F32)),
        (
            "bert.context_length",
            Value::U32(config.max_position_embeddings),
        ),
        ("bert.embedding_length", Value::U32(config.hidden_size)),
        (
            "bert.feed_forward_length",
            Value::U32(config.intermediate_size),
        ),
        ("bert.block_count", Value::U32(config.num_hidden_layers)),
        (
            "bert.attention.head_count",
            Value::U32(config.num_attention_heads),
        ),
        (
            "bert.attention.layer_norm_epsilon",
            Value::F32(config.layer_norm_eps),
        ),
        ("bert.attention.causal", Value::Bool(false)),
        ("bert.pooling_type", Value::U32(POOLING_MEAN)),
        (
            "tokenizer.ggml.token_type_count",
            Value::U32(config.type_vocab_size),
        ),
        ("tokenizer.ggml.model", Value::Str("bert".into())),
        ("tokenizer.ggml.pre", Value::Str("default".into())),
        ("tokenizer.ggml.tokens", Value::StrArray(tokens)),
        ("tokenizer.ggml.token_type", Value::I32Array(token_types)),
        ("tokenizer.ggml.bos_token_id", Value::U32(cls_id)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(unk_id)),
        ("tokenizer.ggml.seperator_token_id", Value::U32(sep_id)),
        ("tokenizer.ggml.padding_token_id", Value::U32(pad_id)),
        ("tokenizer.ggml.mask_token_id", Value::U32(mask_id)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_sep_token", Value::Bool(true)),
        (
            "tokenizer.ggml.normalizer.lowercase",
            Value::Bool(tokenizer.do_lower_case),
        ),
    ];
    write_gguf(&metadata, &tensors, output)
}

/// A vocabulary piece as llama.cpp's WordPiece tokenizer stores it.
fn word_start_form(piece: &str) -> String {
    if piece.starts_with('[') && piece.ends_with(']') {
        piece.to_owned()
    } else if let Some(rest) = piece.strip_prefix("##") {
        rest.to_owned()
    } else {
        format!("\u{2581}{piece}")
    }
}

/// llama.cpp's name for a Hugging Face BERT tensor; `None` for tensors it does not use.
fn gguf_tensor_name(name: &str) -> Result<Option<String>, ConvertError> {
    let bare = name.strip_prefix("bert.").unwrap_or(name);
    let fixed = match bare {
        "embeddings.word_embeddings.weight" => Some("token_embd.weight"),
        "embeddings.position_embeddings.weight" => Some("position_embd.weight"),
        "embeddings.token_type_embeddings.weight" => Some("token_types.weight"),
        "embeddings.LayerNorm.weight" => Some("token_embd_norm.weight"),
        "embeddings.LayerNorm.bias" => Some("token_embd_norm.bias"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Ok(Some(fixed.to_owned()));
    }
    if bare == "embeddings.position_ids" || bare.starts_with("pooler.") {
        return Ok(None);
    }
    let unknown = || ConvertError::UnknownTensor(name.to_owned());
    let rest = bare.strip_prefix("encoder.layer.").ok_or_else(unknown)?;
    let (layer, part) = rest.split_once('.').ok_or_else(unknown)?;
    let layer: u32 = layer.parse().map_err(|_| unknown())?;
    let (module, kind) = part.rsplit_once('.').ok_or_else(unknown)?;
    if !matches!(kind, "weight" | "bias") {
        return Err(unknown());
    }
    let target = match module {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return Err(unknown()),
    };
    Ok(Some(format!("blk.{layer}.{target}.{kind}")))
}

/// A metadata value of the kinds written here.
enum Value {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

/// GGUF's value type tags.
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

/// Writes a GGUF version 3 file: header, metadata, tensor descriptions, then each tensor's
/// data at its aligned offset.
fn write_gguf(
    metadata: &[(&str, Value)],
    tensors: &[(String, Vec<u64>, &[u8])],
    output: impl Write,
) -> Result<u64, ConvertError> {
    let mut out = Counting {
        inner: output,
        written: 0,
    };
    out.write_all(b"GGUF")?;
    out.write_all(&3u32.to_le_bytes())?;
    out.write_all(&(tensors.len() as u64).to_le_bytes())?;
    out.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        write_string(&mut out, key)?;
        match value {
            Value::U32(number) => {
                out.write_all(&TYPE_U32.to_le_bytes())?;
                out.write_all(&number.to_le_bytes())?;
            }
            Value::F32(number) => {
                out.write_all(&TYPE_F32.to_le_bytes())?;
                out.write_all(&number.to_le_bytes())?;
            }
            Value::Bool(flag) => {
                out.write_all(&TYPE_BOOL.to_le_bytes())?;
                out.write_all(&[u8::from(*flag)])?;
            }
            Value::Str(text) => {
                out.write_all(&TYPE_STRING.to_le_bytes())?;
                write_string(&mut out, text)?;
            }
            Value::StrArray(texts) => {
                out.write_all(&TYPE_ARRAY.to_le_bytes())?;
                out.write_all(&TYPE_STRING.to_le_bytes())?;
                out.write_all(&(texts.len() as u64).to_le_bytes())?;
                for text in texts {
                    write_string(&mut out, text)?;
                }
            }
            Value::I32Array(numbers) => {
                out.write_all(&TYPE_ARRAY.to_le_bytes())?;
                out.write_all(&TYPE_I32.to_le_bytes())?;
                out.write_all(&(numbers.len() as u64).to_le_bytes())?;
                for number in numbers {
                    out.write_all(&number.to_le_bytes())?;
                }
            }
        }
    }
    let mut offset = 0u64;
    for (name, dims, data) in tensors {
        write_string(&mut out, name)?;
        out.write_all(&(dims.len() as u32).to_le_bytes())?;
        for dim in dims {
            out.write_all(&dim.to_le_bytes())?;
        }
        out.write_all(&GGML_TYPE_F32.to_le_bytes())?;
        out.write_all(&offset.to_le_bytes())?;
        offset = aligned(offset + data.len() as u64);
    }
    pad(&mut out)?;
    for (_, _, data) in tensors {
        out.write_all(data)?;
        pad(&mut out)?;
    }
    out.flush()?;
    Ok(out.written)
}

fn aligned(offset: u64) -> u64 {
    offset.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn pad<W: Write>(out: &mut Counting<W>) -> io::Result<()> {
    let zeros = [0u8; ALIGNMENT as usize];
    let missing = aligned(out.written) - out.written;
    out.write_all(&zeros[..missing as usize])
}

fn write_string(out: &mut impl Write, text: &str) -> io::Result<()> {
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())
}

/// A writer that counts what passes through it (for alignment and the total).
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names_map_to_llama_cpp_names_and_unknown_ones_are_refused() {
        let name = |hf: &str| gguf_tensor_name(hf).expect("known");
        assert_eq!(
            name("encoder.layer.5.attention.self.query.weight").as_deref(),
            Some("blk.5.attn_q.weight")
        );
        assert_eq!(
            name("bert.encoder.layer.0.output.LayerNorm.bias").as_deref(),
            Some("blk.0.layer_output_norm.bias")
        );
        assert_eq!(
            name("encoder.layer.2.intermediate.dense.weight").as_deref(),
            Some("blk.2.ffn_up.weight")
        );
        assert_eq!(name("embeddings.position_ids"), None);
        assert_eq!(name("pooler.dense.weight"), None);
        assert!(gguf_tensor_name("encoder.layer.x.output.dense.weight").is_err());
        assert!(gguf_tensor_name("classifier.weight").is_err());
    }

    #[test]
    fn word_pieces_take_llama_cpps_word_start_form() {
        assert_eq!(word_start_form("[CLS]"), "[CLS]");
        assert_eq!(word_start_form("##ing"), "ing");
        assert_eq!(word_start_form("bread"), "\u{2581}bread");
    }

    /// A two-layer toy BERT in safetensors form, and the GGUF written from it read back
    /// field by field.
    #[test]
    fn a_converted_file_reads_back_as_gguf_with_every_tensor_aligned() {
        let hidden = 4usize;
        let mut named: Vec<(String, Vec<usize>)> = vec![
            ("embeddings.word_embeddings.weight".into(), vec![6, hidden]),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![8, hidden],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![2, hidden],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![hidden]),
            ("embeddings.LayerNorm.bias".into(), vec![hidden]),
        ];
        for module in ["attention.self.query", "attention.output.dense"] {
            named.push((
                format!("encoder.layer.0.{module}.weight"),
                vec![hidden, hidden],
            ));
            named.push((format!("encoder.layer.0.{module}.bias"), vec![hidden]));
        }
        let buffers: Vec<Vec<u8>> = named
            .iter()
            .enumerate()
            .map(|(index, (_, shape))| {
                let count: usize = shape.iter().product();
                (0..count)
                    .flat_map(|value| ((index * 100 + value) as f32).to_le_bytes())
                    .collect()
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = named
            .iter()
            .zip(&buffers)
            .map(|((name, shape), data)| {
                (
                    name.clone(),
                    safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                        .expect("a view"),
                )
            })
            .collect();
        let weights = safetensors::serialize(views, None).expect("serialized");
        let config = br#"{"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"layer_norm_eps":1e-12,"max_position_embeddings":8,
            "type_vocab_size":2,"vocab_size":6}"#;
        let files = BertFiles {
            name: "toy",
            weights: &weights,
            vocab: b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nbread\n",
            config,
            tokenizer_config: b"{}",
        };
        let mut output = Vec::new();
        let written = bert_to_gguf(&files, &mut output).expect("converted");
        assert_eq!(written, output.len() as u64);
        let mut again = Vec::new();
        bert_to_gguf(&files, &mut again).expect("converted");
        assert_eq!(output, again, "the same inputs give the same bytes");

        // Read it back: the header, then skip the metadata to the tensor table.
        let mut at = 0usize;
        let mut take = |n: usize| {
            let slice = &output[at..at + n];
            at += n;
            slice.to_vec()
        };
        assert_eq!(take(4), b"GGUF");
        assert_eq!(u32::from_le_bytes(take(4).try_into().expect("4")), 3);
        let tensor_count = u64::from_le_bytes(take(8).try_into().expect("8"));
        let kv_count = u64::from_le_bytes(take(8).try_into().expect("8"));
        assert_eq!(tensor_count, named.len() as u64);
        let mut keys = Vec::new();
        let mut tokens = Vec::new();
        let read_string = |take: &mut dyn FnMut(usize) -> Vec<u8>| {
            let len = u64::from_le_bytes(take(8).try_into().expect("8")) as usize;
            String::from_utf8(take(len)).expect("utf-8")
        };
        for _ in 0..kv_count {
            let key = read_string(&mut take);
            let kind = u32::from_le_bytes(take(4).try_into().expect("4"));
            match kind {
                TYPE_U32 | TYPE_F32 | TYPE_I32 => {
                    take(4);
                }
                TYPE_BOOL => {
                    take(1);
                }
                TYPE_STRING => {
                    read_string(&mut take);
                }
                TYPE_ARRAY => {
                    let element = u32::from_le_bytes(take(4).try_into().expect("4"));
                    let count = u64::from_le_bytes(take(8).try_into().expect("8"));
                    for _ in 0..count {
                        if element == TYPE_STRING {
                            tokens.push(read_string(&mut take));
                        } else {
                            take(4);
                        }
                    }
                }
                other => panic!("unexpected type {other}"),
            }
            keys.push(key);
        }
        assert!(keys.contains(&"bert.pooling_type".to_owned()));
        assert_eq!(tokens[5], "\u{2581}bread");
        let mut table = Vec::new();
        for _ in 0..tensor_count {
            let name = read_string(&mut take);
            let dims = u32::from_le_bytes(take(4).try_into().expect("4"));
            let shape: Vec<u64> = (0..dims)
                .map(|_| u64::from_le_bytes(take(8).try_into().expect("8")))
                .collect();
            assert_eq!(
                u32::from_le_bytes(take(4).try_into().expect("4")),
                GGML_TYPE_F32
            );
            let offset = u64::from_le_bytes(take(8).try_into().expect("8"));
            assert_eq!(offset % ALIGNMENT, 0);
            table.push((name, shape, offset));
        }
        let data_start = aligned(at as u64) as usize;
        // The word embeddings (6 × 4, listed as [4, 6]) hold what the safetensors held.
        let (_, shape, offset) = table
            .iter()
            .find(|(name, _, _)| name == "token_embd.weight")
            .expect("the word embeddings");
        assert_eq!(shape, &vec![4, 6]);
        let start = data_start + *offset as usize;
        assert_eq!(&output[start..start + buffers[0].len()], &buffers[0][..]);
        let (_, shape, _) = table
            .iter()
            .find(|(name, _, _)| name == "blk.0.attn_output.bias")
            .expect("a layer's bias");
        assert_eq!(shape, &vec![4]);
    }
}
