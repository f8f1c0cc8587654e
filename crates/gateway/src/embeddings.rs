//! `POST /embeddings`: the embedding operation on the request pipeline. Its body is parsed and
//! checked, its model resolved through the catalogue (ids and the `text-embedding-*` aliases)
//! and held to be an embedding model, and it is priced per input token; then a provider is
//! tried until one answers with a vector for every input, and the list goes back to the
//! client, in base64 if it asked.
//!
//! The provider receives the inputs and the model only. Nothing here logs or stores the inputs
//! or the vectors; the request's one log line is its settlement record's.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use wire::chat::Usage;
use wire::embeddings::{
    EmbeddingList, EmbeddingRequest, EncodingFormat, ProviderEmbeddingRequest, Vector,
};
use wire::error::{ApiError, ErrorCode};
use wire::models::ModelType;
use wire::provider::PROVIDER_EMBEDDINGS_PATH;

use crate::AppState;
use crate::catalogue::LiveModels;
use crate::pipeline::dispatch::{Failure, dispatch_with, read_whole, send_to_provider};
use crate::pipeline::pricing::{UsageBound, estimate_prompt_tokens};
use crate::pipeline::respond::insert_header;
use crate::pipeline::settlement::Tally;
use crate::pipeline::{Admitted, Operation, Resolved, resolve_typed};
use crate::registry::Provider;

/// Tokens a model adds around each input (BERT's `[CLS]` and `[SEP]`), in the bound.
const SPECIAL_TOKENS_PER_INPUT: u64 = 2;
/// Bytes of a provider's reply per input, at most: a vector of up to 4,096 numbers, each a
/// JSON float of at most 32 characters with its separator.
const MAX_REPLY_BYTES_PER_INPUT: usize = 128 * 1024;
/// Least room for a provider's reply (a small request's vectors).
const MIN_REPLY_BYTES: usize = 1024 * 1024;
/// Most room for a provider's reply, whatever the request.
const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// The embedding operation.
pub(crate) struct Embeddings;

impl Operation for Embeddings {
    const ROUTE: &'static str = "embeddings";
    const ID_PREFIX: &'static str = "emb";
    type Request = EmbeddingRequest;

    fn body_limit(state: &AppState) -> usize {
        state.config.limits.max_body_bytes
    }

    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
        crate::pipeline::check_json_content_type(headers)
    }

    fn parse(
        _state: &AppState,
        _headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<EmbeddingRequest, ApiError> {
        EmbeddingRequest::parse(body)
    }

    fn resolve(
        state: &AppState,
        request: &EmbeddingRequest,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError> {
        resolve_typed(
            state,
            &request.model,
            live,
            ModelType::Embedding,
            "embedding",
        )
    }

    fn bound(_state: &AppState, request: &EmbeddingRequest, _body: &Bytes) -> UsageBound {
        // A token is at least one byte of text (or one id), plus the model's special tokens.
        let prompt_tokens = request
            .inputs
            .iter()
            .map(|input| (input.size() as u64).saturating_add(SPECIAL_TOKENS_PER_INPUT))
            .fold(0u64, u64::saturating_add);
        UsageBound {
            prompt_tokens,
            completion_tokens: 0,
        }
    }

    async fn respond(admitted: Admitted<EmbeddingRequest>) -> Result<Response, ApiError> {
        let Admitted { request, paid } = admitted;
        let state = Arc::clone(&paid.state);
        let model_id = paid.model.model_id.clone();
        let model_name = paid.model.model_name.clone();
        let inputs = request.inputs.len();
        let input_bytes: usize = request.inputs.iter().map(|input| input.size()).sum();
        let body = Bytes::from(
            serde_json::to_vec(&ProviderEmbeddingRequest {
                model: model_id.clone(),
                input: request.inputs,
                dimensions: request.dimensions,
            })
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Internal,
                    "the provider request could not be encoded",
                )
            })?,
        );
        let reply_limit = inputs
            .saturating_mul(MAX_REPLY_BYTES_PER_INPUT)
            .clamp(MIN_REPLY_BYTES, MAX_REPLY_BYTES);
        let (attempt, attempts, list) = dispatch_with(&state, &model_id, None, |provider| {
            embed(&state, provider, body.clone(), inputs, reply_limit)
        })
        .await?;
        let bound = paid.bound;
        // Without a report, the inputs are charged at the usual estimate from their bytes.
        let estimate = estimate_prompt_tokens(input_bytes)
            .saturating_add(SPECIAL_TOKENS_PER_INPUT.saturating_mul(inputs as u64));
        let mut record = paid
            .commit(
                Self::ROUTE,
                "embeddings",
                &attempt.provider,
                attempts,
                Tally::new(bound, estimate),
            )
            .await?;
        if list.usage.prompt_tokens > 0 {
            record
                .tally
                .report(Usage::counts(list.usage.prompt_tokens, 0));
        }
        let usage = record.usage();
        let mut list = list;
        list.model.clone_from(&model_id);
        list.usage.prompt_tokens = usage.prompt_tokens;
        list.usage.total_tokens = usage.prompt_tokens;
        if request.encoding_format == EncodingFormat::Base64 {
            for item in &mut list.data {
                if let Vector::Float(numbers) = &item.embedding {
                    item.embedding = Vector::Base64(wire::embeddings::to_base64(numbers));
                }
            }
        }
        let body = serde_json::to_vec(&list).map_err(|_| {
            ApiError::new(ErrorCode::Internal, "the embeddings could not be encoded")
        })?;
        record.status = Some(200);
        let provider_id = record.provider.id.clone();
        drop(record);
        let mut response = (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        insert_header(headers, "x-venice-model-id", &model_id);
        insert_header(headers, "x-venice-model-name", &model_name);
        insert_header(headers, "x-gondola-provider", &provider_id);
        Ok(response)
    }
}

/// Sends the request to one provider and reads its whole answer: a vector for each input.
async fn embed(
    state: &AppState,
    provider: Arc<Provider>,
    body: Bytes,
    inputs: usize,
    reply_limit: usize,
) -> Result<EmbeddingList, Failure> {
    let deadline = tokio::time::Instant::now() + state.config.limits.first_byte_timeout;
    let request_id = economy::random_hex(16);
    let response = send_to_provider(
        state,
        &provider,
        PROVIDER_EMBEDDINGS_PATH,
        &[
            (http::header::CONTENT_TYPE.as_str(), "application/json"),
            ("x-request-id", &request_id),
        ],
        body,
        deadline,
    )
    .await?;
    let reply = read_whole(response, deadline, reply_limit, "embeddings").await?;
    let list: EmbeddingList = serde_json::from_slice(&reply).map_err(|_| {
        Failure::fault(
            ErrorCode::UpstreamError,
            "the provider's answer is not a list of embeddings",
        )
    })?;
    let mut seen = vec![false; inputs];
    let dimensions = list.data.first().map(|item| vector_len(&item.embedding));
    for item in &list.data {
        let index = item.index as usize;
        let fresh = seen.get(index).is_some_and(|seen| !seen);
        if !fresh
            || !matches!(item.embedding, Vector::Float(_))
            || Some(vector_len(&item.embedding)) != dimensions
        {
            return Err(Failure::fault(
                ErrorCode::UpstreamError,
                "the provider's embeddings do not match the inputs",
            ));
        }
        seen[index] = true;
    }
    if list.data.len() != inputs {
        return Err(Failure::fault(
            ErrorCode::UpstreamError,
            "the provider's embeddings do not match the inputs",
        ));
    }
    let mut list = list;
    list.data.sort_by_key(|item| item.index);
    Ok(list)
}

fn vector_len(vector: &Vector) -> usize {
    match vector {
        Vector::Float(numbers) => numbers.len(),
        Vector::Base64(text) => text.len(),
    }
}
