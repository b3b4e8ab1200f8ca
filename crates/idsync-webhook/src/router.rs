//! The HTTP routes: read (bounded), authenticate, parse, normalise, enqueue, answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::metrics::SharedString;
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use idsync_core::LoginEvent;
use serde_json::json;
use tracing::{Instrument, debug, field, info, warn};

use crate::auth::{AuthFailure, PreparedAuth};
use crate::config::{HookFormat, Limits, SourceHook};
use crate::formats::{self, Mapped, generic};
use crate::queue::{Clock, Enqueued, EventQueue, EventWaiter, NewEvent};
use crate::reject::{Reason, Reject};
use crate::telemetry as metrics;

/// The generic endpoint.
pub const LOGIN_PATH: &str = "/v1/events/login";
/// The per-source native endpoint.
pub const HOOK_PATH: &str = "/v1/hooks/{source}";
/// The Okta verification challenge header.
pub const OKTA_CHALLENGE_HEADER: &str = "x-okta-verification-challenge";
/// The longest `?wait=`, in seconds; larger values are capped.
pub const MAX_WAIT_SECONDS: u64 = 30;

struct Hook {
    name: SharedString,
    format: HookFormat,
    auth: PreparedAuth,
}

struct AppState<Q: ?Sized, W: ?Sized> {
    hooks: HashMap<String, Arc<Hook>>,
    queue: Arc<Q>,
    waiter: Arc<W>,
    limits: Limits,
    clock: Arc<dyn Clock>,
}

type Shared<Q, W> = Arc<AppState<Q, W>>;

/// The webhook routes, ready to be merged into the server's router:
///
/// - `POST /v1/events/login`: the generic JSON form, for any configured source;
/// - `POST /v1/hooks/{source}`: the source's native format (`format` in its settings);
/// - `GET /v1/hooks/{source}`: Okta's one-time verification challenge (Okta sources only).
///
/// Secrets are prepared once here. A source listed twice keeps its first entry; a source with an empty
/// secret rejects every delivery (use [`crate::validate_hooks`] to report both as configuration errors).
pub fn router<Q, W>(
    hooks: Vec<SourceHook>,
    queue: Arc<Q>,
    waiter: Arc<W>,
    limits: Limits,
    clock: Arc<dyn Clock>,
) -> Router
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    metrics::describe();
    let mut prepared = HashMap::with_capacity(hooks.len());
    for hook in hooks {
        if prepared.contains_key(&hook.source) {
            warn!(source = %hook.source, "webhook configured twice for this source; keeping the first");
            continue;
        }
        let auth = PreparedAuth::new(&hook.config.auth);
        if !auth.usable() {
            warn!(source = %hook.source, "webhook secret is empty: every delivery for this source is rejected");
        }
        let entry = Hook {
            name: SharedString::from_owned(hook.source.clone()),
            format: hook.config.format,
            auth,
        };
        prepared.insert(hook.source, Arc::new(entry));
    }
    let state: Shared<Q, W> = Arc::new(AppState {
        hooks: prepared,
        queue,
        waiter,
        limits,
        clock,
    });
    Router::new()
        .route(LOGIN_PATH, post(post_login::<Q, W>))
        .route(HOOK_PATH, post(post_hook::<Q, W>).get(get_hook::<Q, W>))
        .with_state(state)
}

/// The bookkeeping of one delivery: its metrics labels and start time.
struct Delivery {
    started: Instant,
    format: &'static str,
    source: SharedString,
}

impl Delivery {
    fn new(format: &'static str) -> Self {
        Delivery {
            started: Instant::now(),
            format,
            source: SharedString::const_str(metrics::UNKNOWN_SOURCE),
        }
    }

    fn identified(&mut self, hook: &Hook) {
        self.source = hook.name.clone();
        tracing::Span::current().record("source", &*hook.name);
    }

    /// Counts the delivery and turns its result into the response.
    fn finish(self, result: Result<Answer, Reject>) -> Response {
        metrics::received(&self.source, self.format);
        match result {
            Ok(answer) => answer.into_response(),
            Err(reject) => {
                metrics::rejected(&self.source, reject.reason, 1);
                match reject.reason {
                    Reason::Unauthorized | Reason::Stale => {
                        info!(
                            status = reject.status.as_u16(),
                            reason = reject.reason.as_str(),
                            "delivery rejected: {}",
                            reject.message
                        )
                    }
                    Reason::QueueError => {}
                    _ => {
                        debug!(
                            status = reject.status.as_u16(),
                            reason = reject.reason.as_str(),
                            "delivery rejected: {}",
                            reject.message
                        )
                    }
                }
                reject.into_response()
            }
        }
    }
}

/// A successful answer.
enum Answer {
    /// One event acknowledged: 202 `{"id", "duplicate"}`, or 200 with the status document after `?wait=`.
    One {
        enqueued: Enqueued,
        document: Option<serde_json::Value>,
    },
    /// A native delivery that carries no login: 200 `{"ignored": true, "reason"}`.
    Ignored(&'static str),
    /// An Okta delivery: 200 `{"accepted": [{"id", "duplicate"}, …], "ignored": n}` (Okta wants a 200).
    Batch { accepted: Vec<Enqueued>, ignored: usize },
    /// Okta's verification: 200 `{"verification": challenge}`.
    Verification(String),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::One {
                document: Some(document),
                ..
            } => (StatusCode::OK, Json(document)).into_response(),
            Answer::One {
                enqueued,
                document: None,
            } => (StatusCode::ACCEPTED, Json(enqueued)).into_response(),
            Answer::Ignored(reason) => {
                (StatusCode::OK, Json(json!({ "ignored": true, "reason": reason }))).into_response()
            }
            Answer::Batch { accepted, ignored } => (
                StatusCode::OK,
                Json(json!({ "accepted": accepted, "ignored": ignored })),
            )
                .into_response(),
            Answer::Verification(challenge) => {
                (StatusCode::OK, Json(json!({ "verification": challenge }))).into_response()
            }
        }
    }
}

fn delivery_span(route: &'static str, format: &'static str) -> tracing::Span {
    tracing::info_span!(
        "webhook",
        route,
        format,
        source = field::Empty,
        event_id = field::Empty
    )
}

async fn post_login<Q, W>(
    State(state): State<Shared<Q, W>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    async move {
        let mut delivery = Delivery::new(HookFormat::Generic.as_str());
        let result = login(&state, query.as_deref(), &headers, body, &mut delivery).await;
        delivery.finish(result)
    }
    .instrument(delivery_span(LOGIN_PATH, HookFormat::Generic.as_str()))
    .await
}

async fn login<Q, W>(
    state: &AppState<Q, W>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    delivery: &mut Delivery,
) -> Result<Answer, Reject>
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    let wait = wait_param(query)?;
    check_content_type(headers)?;
    let body = read_body(headers, body, state.limits.max_body_bytes).await?;
    let hook = {
        let source = generic::source_of(&body)?;
        state
            .hooks
            .get(source.as_ref())
            .cloned()
            .ok_or_else(|| unknown_source(&source))?
    };
    delivery.identified(&hook);
    let now = state.clock.now();
    let signature = authenticate(&hook, headers, &body, now)?;
    let event = generic::validate(generic::parse(&body)?)?;
    let id = event.id.clone().unwrap_or_else(|| generic_id(signature));
    enqueue_one(state, delivery, event, id, now, wait).await
}

async fn post_hook<Q, W>(
    State(state): State<Shared<Q, W>>,
    Path(source): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    let format = state.hooks.get(&source).map_or("unknown", |h| h.format.as_str());
    async move {
        let mut delivery = Delivery::new(format);
        let result = hook(&state, &source, query.as_deref(), &headers, body, &mut delivery).await;
        delivery.finish(result)
    }
    .instrument(delivery_span(HOOK_PATH, format))
    .await
}

async fn hook<Q, W>(
    state: &AppState<Q, W>,
    source: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    delivery: &mut Delivery,
) -> Result<Answer, Reject>
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    let hook = state
        .hooks
        .get(source)
        .cloned()
        .ok_or_else(|| unknown_source(source))?;
    delivery.identified(&hook);
    let wait = wait_param(query)?;
    check_content_type(headers)?;
    let body = read_body(headers, body, state.limits.max_body_bytes).await?;
    let now = state.clock.now();
    let signature = authenticate(&hook, headers, &body, now)?;
    match hook.format {
        HookFormat::Generic => {
            let event = generic::validate(generic::parse(&body)?)?;
            if event.source != *hook.name {
                return Err(Reject::bad_request(format!(
                    "the body's source does not match the URL's source {}",
                    &*hook.name
                )));
            }
            let id = event.id.clone().unwrap_or_else(|| generic_id(signature));
            enqueue_one(state, delivery, event, id, now, wait).await
        }
        HookFormat::Keycloak => {
            let Mapped { mut events, ignored } = formats::keycloak::map(&hook.name, &body)?;
            match events.pop() {
                Some(event) => {
                    let id = event.id.clone().unwrap_or_else(formats::generated_id);
                    enqueue_one(state, delivery, event, id, now, wait).await
                }
                None => {
                    let reason = ignored.first().copied().unwrap_or("no login in the delivery");
                    metrics::rejected(&delivery.source, Reason::Ignored, 1);
                    debug!(reason, "delivery ignored");
                    Ok(Answer::Ignored(reason))
                }
            }
        }
        HookFormat::Okta => {
            let Mapped { events, ignored } = formats::okta::map(&hook.name, &body)?;
            metrics::rejected(&delivery.source, Reason::Ignored, ignored.len() as u64);
            let enqueues = events.into_iter().map(|event| {
                let id = event.id.clone().unwrap_or_else(formats::generated_id);
                enqueue(state, event, id, now)
            });
            let results = futures::future::join_all(enqueues).await;
            let accepted = results.into_iter().collect::<Result<Vec<_>, _>>()?;
            metrics::accepted(&delivery.source, accepted.len() as u64);
            metrics::ack(delivery.started.elapsed().as_secs_f64());
            debug!(
                accepted = accepted.len(),
                ignored = ignored.len(),
                "okta delivery accepted"
            );
            Ok(Answer::Batch {
                accepted,
                ignored: ignored.len(),
            })
        }
    }
}

async fn get_hook<Q, W>(
    State(state): State<Shared<Q, W>>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> Response
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    async move {
        let result = verify_okta(&state, &source, &headers);
        match result {
            Ok(answer) => answer.into_response(),
            Err(reject) => {
                let label = state.hooks.get(&source).map_or_else(
                    || SharedString::const_str(metrics::UNKNOWN_SOURCE),
                    |hook| hook.name.clone(),
                );
                metrics::rejected(&label, reject.reason, 1);
                debug!(
                    status = reject.status.as_u16(),
                    "verification rejected: {}", reject.message
                );
                reject.into_response()
            }
        }
    }
    .instrument(delivery_span(HOOK_PATH, HookFormat::Okta.as_str()))
    .await
}

fn verify_okta<Q, W>(state: &AppState<Q, W>, source: &str, headers: &HeaderMap) -> Result<Answer, Reject>
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    let hook = state.hooks.get(source).ok_or_else(|| unknown_source(source))?;
    tracing::Span::current().record("source", &*hook.name);
    if hook.format != HookFormat::Okta {
        return Err(Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Reason::Unsupported,
            format!(
                "GET answers Okta's verification challenge; source {} is not an Okta source",
                &*hook.name
            ),
        ));
    }
    authenticate(hook, headers, b"", state.clock.now())?;
    let challenge = headers
        .get(OKTA_CHALLENGE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Reject::bad_request("missing X-Okta-Verification-Challenge header"))?;
    info!("answered Okta's verification challenge");
    Ok(Answer::Verification(challenge.to_string()))
}

/// Enqueues one event, then answers (waiting first when asked to).
async fn enqueue_one<Q, W>(
    state: &AppState<Q, W>,
    delivery: &Delivery,
    event: LoginEvent,
    id: String,
    now: DateTime<Utc>,
    wait: Option<Duration>,
) -> Result<Answer, Reject>
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    tracing::Span::current().record("event_id", id.as_str());
    let enqueued = enqueue(state, event, id, now).await?;
    metrics::accepted(&delivery.source, 1);
    metrics::ack(delivery.started.elapsed().as_secs_f64());
    debug!(duplicate = enqueued.duplicate, "login event accepted");
    let document = match wait {
        Some(timeout) => tokio::time::timeout(timeout, state.waiter.wait(&enqueued.id, timeout))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    Ok(Answer::One { enqueued, document })
}

async fn enqueue<Q, W>(
    state: &AppState<Q, W>,
    mut event: LoginEvent,
    id: String,
    received_at: DateTime<Utc>,
) -> Result<Enqueued, Reject>
where
    Q: EventQueue + ?Sized,
    W: EventWaiter + ?Sized,
{
    event.id = Some(id.clone());
    state
        .queue
        .enqueue(NewEvent {
            id,
            event,
            received_at,
        })
        .await
        .map_err(|error| {
            warn!(%error, "could not enqueue a login event");
            Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Reason::QueueError,
                "queue unavailable",
            )
        })
}

fn authenticate(
    hook: &Hook,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<[u8; 32]>, Reject> {
    match hook.auth.check(headers, body, now) {
        Ok(authenticated) => Ok(authenticated.signature),
        Err(AuthFailure::Unauthorized(message)) => Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            Reason::Unauthorized,
            message,
        )),
        Err(AuthFailure::Stale) => Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            Reason::Stale,
            "X-Idsync-Timestamp is outside the replay window (check the sender's clock)",
        )),
    }
}

/// The id of a generic event sent without one. Under HMAC it derives from the verified signature, so a
/// replay of the same signed delivery (within the replay window) is a duplicate, not a second event.
fn generic_id(signature: Option<[u8; 32]>) -> String {
    match signature {
        Some(signature) => format!("hmac-{}", hex::encode(&signature[..16])),
        None => formats::generated_id(),
    }
}

fn unknown_source(source: &str) -> Reject {
    let shown: String = source.chars().take(64).filter(|c| !c.is_control()).collect();
    Reject::new(
        StatusCode::NOT_FOUND,
        Reason::UnknownSource,
        format!("no webhook is configured for source {shown:?}"),
    )
}

/// `application/json`, any parameters, or any `application/*+json`.
fn check_content_type(headers: &HeaderMap) -> Result<(), Reject> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(t) if t.starts_with("application/") && t.ends_with("+json") => Ok(()),
        _ => Err(Reject::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::BadContentType,
            "Content-Type must be application/json",
        )),
    }
}

fn too_large(limit: usize) -> Reject {
    Reject::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Reason::TooLarge,
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

/// The body, refusing (without buffering) anything over `limit`.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Reject> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(_) => Err(Reject::bad_request("could not read the request body")),
    }
}

/// `?wait=N`: whole seconds, 0 (no wait) to 30; larger values are capped at 30.
fn wait_param(query: Option<&str>) -> Result<Option<Duration>, Reject> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "wait" {
            let seconds: u64 = value
                .parse()
                .map_err(|_| Reject::bad_request("wait must be a whole number of seconds (at most 30)"))?;
            return Ok((seconds > 0).then(|| Duration::from_secs(seconds.min(MAX_WAIT_SECONDS))));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn wait_is_bounded_and_strict() {
        assert_eq!(wait_param(None).unwrap(), None);
        assert_eq!(wait_param(Some("x=1")).unwrap(), None);
        assert_eq!(wait_param(Some("wait=0")).unwrap(), None);
        assert_eq!(
            wait_param(Some("a=b&wait=5")).unwrap(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            wait_param(Some("wait=3600")).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert!(wait_param(Some("wait=soon")).is_err());
        assert!(wait_param(Some("wait=-1")).is_err());
        assert!(wait_param(Some("wait")).is_err());
    }

    #[test]
    fn content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            check_content_type(&headers).is_ok()
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/cloudevents+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn hmac_ids_are_stable_per_signature() {
        let sig = [7u8; 32];
        assert_eq!(generic_id(Some(sig)), generic_id(Some(sig)));
        assert_eq!(generic_id(Some(sig)), format!("hmac-{}", "07".repeat(16)));
        assert_ne!(generic_id(None), generic_id(None));
    }

    #[test]
    fn unknown_source_messages_are_bounded() {
        let reject = unknown_source(&format!("{}\n", "x".repeat(500)));
        assert_eq!(reject.status, StatusCode::NOT_FOUND);
        assert!(reject.message.len() < 120, "{}", reject.message);
    }
}
