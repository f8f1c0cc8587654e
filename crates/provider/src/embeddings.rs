//! `POST /provider/v1/embeddings`: vectors from the embedded embedding engine, or from an
//! OpenAI-compatible engine's `/embeddings` (llama.cpp's server, vLLM, Ollama). The answer is
//! always OpenAI's list with float vectors; the gateway encodes base64 for clients that ask.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use engine::{EmbedError, EmbedInput, Embedder};
use http::{HeaderMap, StatusCode};
use wire::embeddings::{EmbeddingInput, EmbeddingList, ProviderEmbeddingRequest};
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;

use crate::{AppState, Backend, UpstreamApi, accept, error_response};

/// Most bytes of an upstream engine's answer: 2,048 vectors of 4,096 numbers in JSON.
const MAX_UPSTREAM_REPLY_BYTES: usize = 256 * 1024 * 1024;

pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_permit, request) = match accept::<ProviderEmbeddingRequest>(
        &state,
        &headers,
        &body,
        "an embedding request",
        |request| &request.model,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(response) => return response,
    };
    let result = match &state.backend {
        Backend::EmbeddedEmbeddings { embedder, model_id } => {
            embedded(Arc::clone(embedder), model_id, request).await
        }
        Backend::Upstream {
            api: UpstreamApi::OpenAi,
            base_url,
            upstream_model,
            api_key,
            model_type: ModelType::Embedding,
            model_id,
            ..
        } => {
            upstream(
                state.http.get(),
                base_url,
                upstream_model,
                model_id,
                api_key.as_deref(),
                request,
            )
            .await
        }
        _ => Err(ApiError::invalid(
            "model",
            format!(
                "{} serves chat completions, not embeddings",
                state.backend.model_id()
            ),
        )),
    };
    match result {
        Ok(list) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&list).unwrap_or_default(),
        )
            .into_response(),
        Err(error) => error_response(&error),
    }
}

async fn embedded(
    embedder: Arc<Embedder>,
    model_id: &str,
    request: ProviderEmbeddingRequest,
) -> Result<EmbeddingList, ApiError> {
    let dimensions = embedder.info().dimensions;
    if let Some(asked) = request.dimensions
        && asked != dimensions
    {
        return Err(ApiError::invalid(
            "dimensions",
            format!(
                "model {model_id:?} gives vectors of {dimensions} numbers and cannot shorten them; leave dimensions out or give {dimensions}"
            ),
        ));
    }
    let inputs: Vec<EmbedInput> = request
        .input
        .into_iter()
        .map(|input| match input {
            EmbeddingInput::Text(text) => EmbedInput::Text(text),
            EmbeddingInput::Tokens(tokens) => EmbedInput::Tokens(tokens),
        })
        .collect();
    // Tokenizing a large request is milliseconds of CPU: off the async runtime.
    let tokenizer = Arc::clone(&embedder);
    let tokens = tokio::task::spawn_blocking(move || tokenizer.tokenize(&inputs))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the tokenizer failed"))?
        .map_err(embed_error)?;
    let embeddings = embedder
        .embed_tokenized(tokens)
        .await
        .map_err(embed_error)?;
    Ok(EmbeddingList::new(
        model_id.to_owned(),
        embeddings.vectors,
        embeddings.prompt_tokens,
    ))
}

fn embed_error(error: EmbedError) -> ApiError {
    match &error {
        EmbedError::TooLong { .. } => {
            ApiError::new(ErrorCode::TooManyTokens, error.to_string()).with_param("input")
        }
        EmbedError::Empty { .. } | EmbedError::UnknownToken { .. } => {
            ApiError::invalid("input", error.to_string())
        }
        EmbedError::AtCapacity { .. } => {
            ApiError::new(ErrorCode::ModelAtCapacity, error.to_string()).with_retry_after(1)
        }
        EmbedError::Stopped => ApiError::new(ErrorCode::ModelOffline, error.to_string()),
        EmbedError::Failed(_) => ApiError::new(ErrorCode::Internal, error.to_string()),
    }
}

async fn upstream(
    http: &reqwest::Client,
    base_url: &str,
    upstream_model: &str,
    model_id: &str,
    api_key: Option<&str>,
    request: ProviderEmbeddingRequest,
) -> Result<EmbeddingList, ApiError> {
    let inputs = request.input.len();
    let mut body = serde_json::json!({
        "model": upstream_model,
        "input": request.input,
        "encoding_format": "float",
    });
    if let Some(dimensions) = request.dimensions {
        body["dimensions"] = dimensions.into();
    }
    let mut call = http
        .post(format!("{}/embeddings", base_url.trim_end_matches('/')))
        .json(&body);
    if let Some(key) = api_key {
        call = call.bearer_auth(key);
    }
    let (status, reply) = crate::call_upstream(call, MAX_UPSTREAM_REPLY_BYTES).await?;
    if !(200..300).contains(&status) {
        return Err(crate::upstream_error(status, &reply));
    }
    let mut list: EmbeddingList = serde_json::from_slice(&reply).map_err(|_| {
        ApiError::new(
            ErrorCode::UpstreamError,
            "the upstream engine's answer is not a list of embeddings",
        )
    })?;
    if list.data.len() != inputs {
        return Err(ApiError::new(
            ErrorCode::UpstreamError,
            format!(
                "the upstream engine gave {} vectors for {inputs} inputs",
                list.data.len()
            ),
        ));
    }
    model_id.clone_into(&mut list.model);
    Ok(list)
}
