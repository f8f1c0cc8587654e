//! What every operation's response carries: headers (rate limits, balances) and server-sent
//! events written to the client.

use axum::body::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use wire::money::Amount;

use crate::rate_limit::RateStatus;

pub(crate) fn insert_balance_headers(headers: &mut HeaderMap, balance: &economy::meter::Balance) {
    insert_header(
        headers,
        "x-venice-balance-diem",
        &Amount(balance.free.allowance).to_decimal_string(),
    );
    insert_header(
        headers,
        "x-venice-balance-usd",
        &Amount(balance.free.usd).to_decimal_string(),
    );
}

pub(crate) fn sse_data<T: Serialize>(value: &T) -> Bytes {
    let mut frame = b"data: ".to_vec();
    if serde_json::to_writer(&mut frame, value).is_err() {
        frame.truncate(6);
        frame.extend_from_slice(
            br#"{"error":{"message":"encoding failed","code":"INTERNAL_ERROR"}}"#,
        );
    }
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

pub(crate) fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

pub(crate) fn insert_rate_headers(headers: &mut HeaderMap, rate: &RateStatus) {
    let reset = format!("{}s", rate.reset_after.as_secs().max(1));
    insert_header(
        headers,
        "x-ratelimit-limit-requests",
        &rate.limit.requests_per_minute.to_string(),
    );
    insert_header(
        headers,
        "x-ratelimit-remaining-requests",
        &rate.remaining_requests.to_string(),
    );
    insert_header(headers, "x-ratelimit-reset-requests", &reset);
    insert_header(
        headers,
        "x-ratelimit-limit-tokens",
        &rate.limit.tokens_per_minute.to_string(),
    );
    insert_header(
        headers,
        "x-ratelimit-remaining-tokens",
        &rate.remaining_tokens.to_string(),
    );
    insert_header(headers, "x-ratelimit-reset-tokens", &reset);
}
