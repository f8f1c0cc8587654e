//! The one path every operation takes, stage by stage, each a module of its own:
//!
//! 1. [`admission`]: who is asking (API key, privacy tokens, or anonymous where allowed),
//!    whether they are blocked for failing too often, the body read within its bounds, and the
//!    caller's per-minute budget for the model;
//! 2. [`pricing`]: the most the request may use and what that costs;
//! 3. [`payment`]: that much reserved before anything is sent (tokens' nonces, or the account's
//!    balance and its key's cap);
//! 4. [`dispatch`]: a provider chosen, and failover to another while nothing has reached the
//!    client, each fault counted against the provider's breaker;
//! 5. the operation's own relay (streamed or gathered), reading the provider with [`events`]
//!    and writing with [`respond`];
//! 6. [`settlement`]: the charge (the gateway's own count held against the provider's report
//!    and the bound), the metrics and the request's one log line, once, however it ended.
//!
//! An operation is a type implementing [`Operation`]: how its body is parsed and checked,
//! which model it is for, the bound it is priced by, and how it is sent to a provider and
//! relayed. [`run`] drives it through the stages; a refusal at any stage is answered by
//! [`refused`], in the API's own error shape. `chat.rs` (plain chat) and `sealed.rs` (chat
//! sealed to providers) are its users; a new kind of request (embeddings, speech) is one more.

pub(crate) mod admission;
pub(crate) mod dispatch;
pub(crate) mod events;
pub(crate) mod payment;
pub(crate) mod pricing;
pub(crate) mod recording;
pub(crate) mod respond;
pub(crate) mod settlement;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use wire::error::{ApiError, Dialect, ErrorCode};

use crate::catalogue::LiveModels;
use crate::config::ModelPricing;
use crate::metrics::RequestLabels;
use crate::rate_limit::RateStatus;
use crate::{AppState, error_response};
use payment::Payment;
use pricing::UsageBound;

/// A request refused, and the model it was for (`unknown` before its model was known): the
/// model is the refusal's metric label.
pub(crate) type Refusal = (ApiError, String);

/// A refusal before the request's model is known.
pub(crate) fn refuse(error: ApiError) -> Refusal {
    (error, "unknown".to_owned())
}

/// What the error path needs to know of a request that got far enough.
#[derive(Default)]
pub(crate) struct Seen {
    /// The rate-limit identity of an authenticated caller.
    pub(crate) caller: Option<String>,
    /// The account's balance before the request.
    pub(crate) balance: Option<economy::meter::Balance>,
    /// How many tokens the request needs, when it carried too few.
    pub(crate) tokens_required: Option<u128>,
}

/// One request on its way through the stages: what its refusal, if it comes, reports.
pub(crate) struct Context {
    /// The operation's route, a metric label.
    pub(crate) route: &'static str,
    pub(crate) request_id: String,
    pub(crate) started: Instant,
    pub(crate) dialect: Dialect,
    /// The caller's rate-limit status, once checked.
    pub(crate) rate: Option<RateStatus>,
    pub(crate) seen: Seen,
}

/// The response to a refused request, after counting it: a failure against the caller, the
/// metric, the log line; with the rate, balance and tokens-required headers of what the
/// context learned.
pub(crate) fn refused(
    state: &AppState,
    context: &Context,
    error: &ApiError,
    model: String,
) -> Response {
    let status = error.status();
    if let Some(caller) = &context.seen.caller
        && (400..500).contains(&status)
        && status != 429
    {
        let tiers = &state.tiers;
        match &state.cluster {
            // Counted in the background: the refusal does not wait on the store.
            Some(cluster) => {
                let (cluster, caller) = (Arc::clone(cluster), caller.clone());
                let (budget, window) = (tiers.failure_budget, tiers.failure_window);
                tokio::spawn(async move {
                    if let Err(error) = cluster.record_failure(&caller, budget, window).await {
                        tracing::warn!(error = %error, "a failed request was not counted");
                    }
                });
            }
            None => state.rate.record_failure(
                caller,
                tiers.failure_budget,
                tiers.failure_window,
                Instant::now(),
            ),
        }
    }
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route: context.route,
            model,
            status,
        })
        .inc();
    tracing::info!(
        request_id = %context.request_id,
        route = context.route,
        status,
        code = error.code.as_str(),
        duration_ms = context.started.elapsed().as_millis() as u64,
        "request refused"
    );
    let mut response = error_response(error, context.dialect);
    if let Some(rate) = &context.rate {
        respond::insert_rate_headers(response.headers_mut(), rate);
    }
    if let Some(balance) = &context.seen.balance {
        respond::insert_balance_headers(response.headers_mut(), balance);
    }
    if let Some(required) = context.seen.tokens_required {
        respond::insert_header(
            response.headers_mut(),
            privacy::tokens::TOKENS_REQUIRED_HEADER,
            &required.to_string(),
        );
    }
    response
}

/// The model a request is for, as served here.
pub(crate) struct Resolved {
    /// The catalogue's id (what providers serve, what prices and metrics name).
    pub(crate) model_id: String,
    /// Its display name.
    pub(crate) model_name: String,
}

/// The served model `requested` names among models of `model_type` (`kind` names them in
/// errors: "embedding", "speech"): refused when nothing is served by that name, or when the
/// model serves another operation.
pub(crate) fn resolve_typed(
    state: &AppState,
    requested: &str,
    live: &LiveModels,
    model_type: wire::models::ModelType,
    kind: &str,
) -> Result<Resolved, ApiError> {
    let listing = format!(
        "GET /v1/models?type={} lists the {kind} models",
        model_type.as_str()
    );
    let resolved = state
        .catalogue
        .resolve_for(requested, live, model_type)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ModelNotFound,
                format!("model {requested:?} is not served here; {listing}"),
            )
            .with_param("model")
        })?;
    let model_id = resolved.model_id;
    let advert = live.get(&model_id).map(|(advert, _)| advert);
    if let Some(advert) = advert
        && advert.model_type != model_type
    {
        return Err(ApiError::invalid(
            "model",
            format!(
                "model {model_id:?} serves {}, not {}; {listing}",
                advert.model_type.serves(),
                model_type.serves()
            ),
        ));
    }
    let model_name = advert.map_or_else(|| model_id.clone(), |advert| advert.name.clone());
    Ok(Resolved {
        model_id,
        model_name,
    })
}

/// A request through admission, pricing and payment, ready for a provider.
pub(crate) struct Admitted<R> {
    pub(crate) request: R,
    pub(crate) paid: Paid,
}

/// What the pipeline knows of an admitted, paid request, until a provider has it
/// ([`Paid::commit`]).
pub(crate) struct Paid {
    pub(crate) state: Arc<AppState>,
    pub(crate) request_id: String,
    pub(crate) started: Instant,
    pub(crate) model: Resolved,
    pub(crate) bound: UsageBound,
    pub(crate) pricing: ModelPricing,
    /// What the bound costs: what was reserved, and the most the request is charged.
    pub(crate) max_cost: u128,
    pub(crate) payment: Payment,
    /// The rate limiter's identity for the request; `None` when paid with tokens.
    pub(crate) rate_key: Option<String>,
    /// `tokens`, `account` (an account's key, metered) or `none`: for the log line.
    pub(crate) paid_with: &'static str,
    /// Whom the request is charged to, for its prompt cache namespace; `None` when paid with
    /// tokens.
    pub(crate) cache_scope: Option<String>,
    /// Whom what the request starts belongs to ([`crate::auth::Caller::owner`]).
    pub(crate) owner: String,
}

impl Paid {
    /// A provider (`provider`, after `attempts` tries) has the request: its tokens are spent
    /// for good, and the record that settles it starts, counting with `tally`.
    pub(crate) async fn commit(
        mut self,
        route: &'static str,
        message: &'static str,
        provider: &Arc<crate::registry::Provider>,
        attempts: u32,
        tally: settlement::Tally,
    ) -> Result<settlement::Record, ApiError> {
        self.payment.commit_tokens().await?;
        Ok(settlement::Record::start(
            self.state,
            settlement::Started {
                route,
                message,
                request_id: self.request_id,
                model_id: self.model.model_id,
                provider: Arc::clone(provider),
                attempts,
                paid_with: self.paid_with,
                rate_key: self.rate_key,
                metering: self.payment.metering.take(),
                pricing: self.pricing,
                max_cost: self.max_cost,
                started: self.started,
                tally,
            },
        ))
    }
}

/// An operation: what is particular to one kind of request. Everything else (who may ask,
/// what it costs, how it is paid, which provider serves it, how it is settled) is the
/// pipeline's.
pub(crate) trait Operation: Send + Sync + 'static {
    /// The route's metric label.
    const ROUTE: &'static str;
    /// What its request ids begin with.
    const ID_PREFIX: &'static str;
    /// The request, parsed and checked.
    type Request: Send + 'static;

    /// Largest body accepted (413 beyond).
    fn body_limit(state: &AppState) -> usize;

    /// Checks the body's declared type before it is read.
    fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError>;

    /// Parses and checks the body (of the type `headers` declare: a multipart boundary, say)
    /// against this gateway's limits.
    fn parse(
        state: &AppState,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Self::Request, ApiError>;

    /// The served model the request is for.
    fn resolve(
        state: &AppState,
        request: &Self::Request,
        live: &LiveModels,
    ) -> Result<Resolved, ApiError>;

    /// The most the request may use: what it is priced by, reserved for and held to.
    fn bound(state: &AppState, request: &Self::Request, body: &Bytes) -> UsageBound;

    /// The prices its bound's units are charged at, from the model's: per million tokens
    /// unless the operation is priced by another unit (images).
    fn priced(pricing: ModelPricing) -> ModelPricing {
        pricing
    }

    /// Sends the paid request to a provider (failing over with [`dispatch`]) and answers with
    /// its relay, which settles the request when it ends: once a provider has the request,
    /// [`Paid::commit`] spends its tokens and gives the relay its record.
    fn respond(
        admitted: Admitted<Self::Request>,
    ) -> impl Future<Output = Result<Response, ApiError>> + Send;
}

/// Serves one request of operation `O`: every stage in turn, and its refusal if one refuses.
pub(crate) async fn run<O: Operation>(
    state: Arc<AppState>,
    dialect: Dialect,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut context = Context {
        route: O::ROUTE,
        request_id: format!("{}-{}", O::ID_PREFIX, economy::random_hex(12)),
        started: Instant::now(),
        dialect,
        rate: None,
        seen: Seen::default(),
    };
    match serve::<O>(&state, &headers, body, &mut context).await {
        Ok(response) => response,
        Err((error, model)) => refused(&state, &context, &error, model),
    }
}

async fn serve<O: Operation>(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    context: &mut Context,
) -> Result<Response, Refusal> {
    let (tokens, caller) = admission::admit(state, headers, &mut context.seen).await?;
    O::check_content_type(headers).map_err(refuse)?;
    let body = admission::read_body(body, O::body_limit(state))
        .await
        .map_err(refuse)?;
    let request = O::parse(state, headers, &body).map_err(refuse)?;
    let now = Instant::now();
    let live = state.registry.live_models(now);
    let model = O::resolve(state, &request, &live).map_err(refuse)?;
    let model_id = model.model_id.clone();
    let (rate, rate_key) =
        admission::check_rate(state, &caller, tokens.is_some(), &model_id, now).await?;
    context.rate = rate;
    let bound = O::bound(state, &request, &body);
    let pricing = O::priced(state.catalogue.pricing(&model_id));
    let max_cost = bound.max_cost(pricing);
    let payment = payment::pay(
        state,
        &tokens,
        &caller,
        max_cost,
        &model_id,
        &mut context.seen,
    )
    .await?;
    let balance = payment.balance();
    let paid = Paid {
        state: Arc::clone(state),
        request_id: context.request_id.clone(),
        started: context.started,
        model,
        bound,
        pricing,
        max_cost,
        payment,
        // A request paid with tokens has no caller whose limit it counts against.
        rate_key: rate.is_some().then_some(rate_key),
        cache_scope: crate::prompt_cache::scope(
            &caller,
            tokens.is_some(),
            state.config.auth.anonymous_share_prompt_cache,
        ),
        owner: caller.owner(),
        paid_with: match (&tokens, caller.account) {
            (Some(_), _) => "tokens",
            (None, Some(_)) => "account",
            (None, None) => "none",
        },
    };
    let mut response = O::respond(Admitted { request, paid })
        .await
        .map_err(|error| (error, model_id))?;
    let headers = response.headers_mut();
    respond::insert_header(headers, "x-request-id", &context.request_id);
    if let Some(rate) = &rate {
        respond::insert_rate_headers(headers, rate);
    }
    if let Some(balance) = &balance {
        respond::insert_balance_headers(headers, balance);
    }
    Ok(response)
}

/// Refuses a body that is clearly not JSON. `curl -d` labels bodies as form data by default,
/// and a JSON body under that label is still JSON.
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(content_type) = headers.get(http::header::CONTENT_TYPE) {
        let content_type = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let json_like = ["json", "text/plain", "application/x-www-form-urlencoded"]
            .iter()
            .any(|kind| content_type.contains(kind));
        if !json_like {
            return Err(ApiError::new(
                ErrorCode::InvalidContentType,
                "the request body must be JSON (Content-Type: application/json)",
            ));
        }
    }
    Ok(())
}

/// A gateway's state for tests of one stage, with no server and no provider behind it.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::config::GatewayConfig;
    use crate::{AppState, Gateway};

    /// A gateway built from `config` (its background tasks need a Tokio runtime).
    pub(crate) fn gateway(config: GatewayConfig) -> Gateway {
        Gateway::new(config).expect("a gateway")
    }

    pub(crate) fn state(gateway: &Gateway) -> &Arc<AppState> {
        &gateway.state
    }

    /// Registers a provider `id` serving `model` (with room for `max_in_flight` requests).
    pub(crate) fn provider(state: &AppState, id: &str, model: &str, max_in_flight: u32) {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        state.registry.register(
            id.to_owned(),
            ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key(),
            format!("lease-{id}"),
            "token".into(),
            "http://127.0.0.1:9".into(),
            vec![wire::provider::ModelAdvert {
                model_type: wire::models::ModelType::Text,
                id: model.into(),
                name: model.into(),
                context_tokens: 2048,
                quantization: "Q4_1".into(),
                parameters: 1,
                supports_response_schema: false,
                supports_reasoning: false,
                supports_function_calling: true,
                supports_logprobs: true,
                input_media: Vec::new(),
                backend: "embedded".into(),
                voices: Vec::new(),
                image: None,
                video: None,
            }],
            max_in_flight,
            None,
            0,
            Instant::now(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_are_clearly_not_json_are_refused_before_they_are_read() {
        let with = |content_type: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                content_type.parse().expect("a header"),
            );
            check_json_content_type(&headers).map_err(|error| error.status())
        };
        assert_eq!(with("application/json"), Ok(()));
        assert_eq!(with("application/json; charset=utf-8"), Ok(()));
        // `curl -d` sends form data by default; text is taken too.
        assert_eq!(with("application/x-www-form-urlencoded"), Ok(()));
        assert_eq!(with("text/plain"), Ok(()));
        assert_eq!(with("text/html"), Err(415));
        assert_eq!(with("multipart/form-data; boundary=x"), Err(415));
        assert_eq!(check_json_content_type(&HeaderMap::new()), Ok(()));
    }
}
