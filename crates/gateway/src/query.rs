//! Query strings read into typed parameters, and refused in the API's own error shape (axum's
//! own refusal is plain text, which no client of this API expects).

use axum::extract::{FromRequestParts, Query};
use axum::response::Response;
use http::request::Parts;
use serde::de::DeserializeOwned;
use wire::error::{ApiError, Dialect};

use crate::error_response;

/// `Query<T>` whose refusal is a 400 `INVALID_REQUEST` naming the query, in the dialect of the
/// route's prefix.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let dialect = parts
            .extensions
            .get::<Dialect>()
            .copied()
            .unwrap_or(Dialect::OpenAi);
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(error_response(
                &ApiError::invalid("query", rejection.body_text()),
                dialect,
            )),
        }
    }
}
