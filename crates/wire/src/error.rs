//! API errors: what went wrong, whose fault it is, whether another provider may be tried, and
//! how the error is written for each API dialect.
//!
//! OpenAI clients expect `{"error": {"message", "type", "param", "code"}}`; Venice clients expect
//! `{"error": "<message>"}`. `/v1` gets the first, `/api/v1` the second (with `code` and `param`
//! beside it); streams that fail midway get one OpenAI-shaped event on both.

use serde::Serialize;

/// Venice's error codes, plus the few a gateway of providers adds. The wire string never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidModel,
    TooManyTokens,
    AuthenticationFailed,
    InsufficientBalance,
    ApiKeyEpochSpendLimitExceeded,
    ApiKeyMonthSpendLimitExceeded,
    ApiKeyLifetimeSpendLimitExceeded,
    Unauthorized,
    NotFound,
    ModelNotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    InvalidContentType,
    RateLimitExceeded,
    ModelOverloaded,
    InferenceFailed,
    UpstreamError,
    ModelOffline,
    ModelAtCapacity,
    RequestTimeout,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidModel => "INVALID_MODEL",
            Self::TooManyTokens => "TOO_MANY_TOKENS",
            Self::AuthenticationFailed => "AUTHENTICATION_FAILED",
            Self::InsufficientBalance => "INSUFFICIENT_BALANCE",
            Self::ApiKeyEpochSpendLimitExceeded => "API_KEY_EPOCH_SPEND_LIMIT_EXCEEDED",
            Self::ApiKeyMonthSpendLimitExceeded => "API_KEY_MONTH_SPEND_LIMIT_EXCEEDED",
            Self::ApiKeyLifetimeSpendLimitExceeded => "API_KEY_LIFETIME_SPEND_LIMIT_EXCEEDED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::NotFound => "NOT_FOUND",
            Self::ModelNotFound => "MODEL_NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::InvalidContentType => "INVALID_CONTENT_TYPE",
            Self::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Self::ModelOverloaded => "MODEL_OVERLOADED",
            Self::InferenceFailed => "INFERENCE_FAILED",
            Self::UpstreamError => "UPSTREAM_ERROR",
            Self::ModelOffline => "MODEL_OFFLINE",
            Self::ModelAtCapacity => "MODEL_AT_CAPACITY",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::Internal => "INTERNAL_ERROR",
        }
    }

    /// The code on OpenAI's prefix (`/v1`): OpenAI's own lower-case name where it has one
    /// (`invalid_api_key`, `model_not_found`, `context_length_exceeded`,
    /// `rate_limit_exceeded`, `insufficient_quota`), else this code in lower case.
    pub fn openai_code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidModel => "invalid_model",
            Self::TooManyTokens => "context_length_exceeded",
            Self::AuthenticationFailed => "invalid_api_key",
            Self::InsufficientBalance => "insufficient_quota",
            Self::ApiKeyEpochSpendLimitExceeded => "api_key_epoch_spend_limit_exceeded",
            Self::ApiKeyMonthSpendLimitExceeded => "api_key_month_spend_limit_exceeded",
            Self::ApiKeyLifetimeSpendLimitExceeded => "api_key_lifetime_spend_limit_exceeded",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::ModelNotFound => "model_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidContentType => "invalid_content_type",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::ModelOverloaded => "model_overloaded",
            Self::InferenceFailed => "inference_failed",
            Self::UpstreamError => "upstream_error",
            Self::ModelOffline => "model_offline",
            Self::ModelAtCapacity => "model_at_capacity",
            Self::RequestTimeout => "request_timeout",
            Self::Internal => "internal_error",
        }
    }

    /// Reads a code back from its wire string, in either prefix's form.
    pub fn parse(text: &str) -> Option<Self> {
        ALL_CODES
            .iter()
            .copied()
            .find(|code| code.as_str() == text || code.openai_code() == text)
    }

    /// The HTTP status this code is served with.
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::InvalidModel | Self::TooManyTokens => 400,
            Self::AuthenticationFailed => 401,
            Self::InsufficientBalance
            | Self::ApiKeyEpochSpendLimitExceeded
            | Self::ApiKeyMonthSpendLimitExceeded
            | Self::ApiKeyLifetimeSpendLimitExceeded => 402,
            Self::Unauthorized => 403,
            Self::NotFound | Self::ModelNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::PayloadTooLarge => 413,
            Self::InvalidContentType => 415,
            Self::RateLimitExceeded | Self::ModelOverloaded => 429,
            Self::InferenceFailed | Self::Internal => 500,
            Self::UpstreamError => 502,
            Self::ModelOffline | Self::ModelAtCapacity => 503,
            Self::RequestTimeout => 504,
        }
    }

    /// OpenAI's `type` field.
    fn openai_type(self) -> &'static str {
        match self.status() {
            401 => "authentication_error",
            402 => "insufficient_quota",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }
}

const ALL_CODES: &[ErrorCode] = &[
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidModel,
    ErrorCode::TooManyTokens,
    ErrorCode::AuthenticationFailed,
    ErrorCode::InsufficientBalance,
    ErrorCode::ApiKeyEpochSpendLimitExceeded,
    ErrorCode::ApiKeyMonthSpendLimitExceeded,
    ErrorCode::ApiKeyLifetimeSpendLimitExceeded,
    ErrorCode::Unauthorized,
    ErrorCode::NotFound,
    ErrorCode::ModelNotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::PayloadTooLarge,
    ErrorCode::InvalidContentType,
    ErrorCode::RateLimitExceeded,
    ErrorCode::ModelOverloaded,
    ErrorCode::InferenceFailed,
    ErrorCode::UpstreamError,
    ErrorCode::ModelOffline,
    ErrorCode::ModelAtCapacity,
    ErrorCode::RequestTimeout,
    ErrorCode::Internal,
];

/// Who caused an error; decides whether it is worth trying elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request itself is wrong: no provider would do better.
    Client,
    /// A provider failed: another one might succeed.
    Upstream,
    /// The gateway failed.
    Internal,
}

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, as a path (`messages[1].content`).
    pub param: Option<String>,
    pub source: ErrorSource,
    /// Seconds a client should wait before retrying (`Retry-After`).
    pub retry_after_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/v1`: `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `/api/v1`: `{"error": "<message>", "code", "param"}`.
    Venice,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    r#type: &'static str,
    param: Option<&'a str>,
    code: &'static str,
}

#[derive(Serialize)]
struct VeniceBody<'a> {
    error: &'a str,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let source = match code.status() {
            500 => ErrorSource::Internal,
            502..=504 => ErrorSource::Upstream,
            _ => ErrorSource::Client,
        };
        Self {
            code,
            message: message.into(),
            param: None,
            source,
            retry_after_s: None,
        }
    }

    /// A client error about one field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message).with_param(param)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_source(mut self, source: ErrorSource) -> Self {
        self.source = source;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// Whether another provider may succeed where this attempt failed.
    pub fn retry_elsewhere(&self) -> bool {
        self.source == ErrorSource::Upstream
    }

    /// The response body in the given dialect.
    pub fn body(&self, dialect: Dialect) -> String {
        let rendered = match dialect {
            Dialect::OpenAi => serde_json::to_string(&self.openai_body()),
            Dialect::Venice => serde_json::to_string(&VeniceBody {
                error: &self.message,
                code: self.code.as_str(),
                param: self.param.as_deref(),
            }),
        };
        rendered.unwrap_or_else(|_| r#"{"error":"internal error"}"#.to_owned())
    }

    /// The single event a stream that fails midway ends with (OpenAI shape in both dialects).
    pub fn sse_event(&self) -> String {
        let body = serde_json::to_string(&self.openai_body())
            .unwrap_or_else(|_| r#"{"error":{"message":"internal error"}}"#.to_owned());
        format!("data: {body}\n\n")
    }

    fn openai_body(&self) -> OpenAiBody<'_> {
        OpenAiBody {
            error: OpenAiError {
                message: &self.message,
                r#type: self.code.openai_type(),
                param: self.param.as_deref(),
                code: self.code.openai_code(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_dialects_with_the_field_named() {
        let error = ApiError::invalid("temperature", "temperature must be between 0 and 2");
        let openai: serde_json::Value =
            serde_json::from_str(&error.body(Dialect::OpenAi)).expect("json");
        assert_eq!(openai["error"]["param"], "temperature");
        assert_eq!(openai["error"]["code"], "invalid_request");
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        let venice: serde_json::Value =
            serde_json::from_str(&error.body(Dialect::Venice)).expect("json");
        assert_eq!(venice["error"], "temperature must be between 0 and 2");
        assert_eq!(venice["param"], "temperature");
        assert_eq!(venice["code"], "INVALID_REQUEST");
        assert_eq!(error.status(), 400);
        assert!(!error.retry_elsewhere());
    }

    #[test]
    fn every_code_reads_back_from_its_wire_string() {
        for code in ALL_CODES {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert_eq!(ErrorCode::parse(code.openai_code()), Some(*code));
            assert_eq!(code.openai_code(), code.openai_code().to_lowercase());
        }
        assert_eq!(ErrorCode::parse("NOPE"), None);
    }

    #[test]
    fn provider_failures_may_be_retried_elsewhere() {
        assert!(ApiError::new(ErrorCode::UpstreamError, "x").retry_elsewhere());
        assert!(ApiError::new(ErrorCode::RequestTimeout, "x").retry_elsewhere());
        assert!(!ApiError::new(ErrorCode::Internal, "x").retry_elsewhere());
    }

    #[test]
    fn a_stream_error_is_one_sse_event() {
        let event = ApiError::new(ErrorCode::InferenceFailed, "provider went away").sse_event();
        assert!(event.starts_with("data: {\"error\":{"));
        assert!(event.ends_with("\n\n"));
        assert_eq!(event.matches("\n\n").count(), 1);
    }
}
