//! Emulator-only endpoints under `/emulator/` (no authentication; not part of Grafana) and the
//! `/api` middleware that counts requests, injects faults and applies write latency.
//!
//! * `POST /emulator/users/:id/external` `{"authModule","skipOrgRoleSync","providerEnabled"?,
//!   "allowAssignGrafanaAdmin"?}` — gives the user a `user_auth` row (as if it had logged in via
//!   that provider); `DELETE` removes it.
//! * `POST /emulator/faults` `{"status","count","pathPrefix"?,"method"?}` — the next `count`
//!   `/api` requests whose path starts with `pathPrefix` (and method matches) fail with `status`
//!   (`429` carries `Retry-After: 0`); `DELETE /emulator/faults` clears them, `GET` lists them.
//! * `GET /emulator/stats` — `{"writes","requests","writeRequests","writeServiceMicros"}`: 2xx writes, all
//!   `/api` requests, all mutating requests answered (any status) and their summed service time (arrival to
//!   response, so a client can compare its throughput with what the configured latency allows).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::runtime::RuntimeFlavor;

use crate::EmulatorState;
use crate::model::ExternalAuth;
use crate::resp::{Res, bind_or_400, json, msg, ok, success};

/// A pending fault-injection rule.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub remaining: u64,
    pub path_prefix: String,
    pub method: Option<String>,
}

pub(crate) fn routes() -> Router<EmulatorState> {
    Router::new()
        .route(
            "/emulator/users/{id}/external",
            post(set_external).delete(clear_external),
        )
        .route(
            "/emulator/faults",
            post(add_fault).delete(clear_faults).get(list_faults),
        )
        .route("/emulator/stats", get(stats))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExternalBody {
    auth_module: Option<String>,
    #[serde(default)]
    skip_org_role_sync: bool,
    provider_enabled: Option<bool>,
    #[serde(default)]
    allow_assign_grafana_admin: bool,
}

async fn set_external(State(st): State<EmulatorState>, Path(id): Path<String>, body: Bytes) -> Res {
    let b: ExternalBody = bind_or_400(&body)?;
    let id: i64 = id.parse().map_err(|_| msg(400, "id is invalid"))?;
    let mut db = st.db();
    let user = db.user_mut(id).ok_or_else(|| msg(404, "user not found"))?;
    user.external = Some(ExternalAuth {
        auth_module: b.auth_module.unwrap_or_else(|| "oauth_generic_oauth".to_string()),
        skip_org_role_sync: b.skip_org_role_sync,
        provider_enabled: b.provider_enabled.unwrap_or(true),
        allow_assign_grafana_admin: b.allow_assign_grafana_admin,
    });
    Ok(success("User marked as externally authenticated"))
}

async fn clear_external(State(st): State<EmulatorState>, Path(id): Path<String>) -> Res {
    let id: i64 = id.parse().map_err(|_| msg(400, "id is invalid"))?;
    let mut db = st.db();
    let user = db.user_mut(id).ok_or_else(|| msg(404, "user not found"))?;
    user.external = None;
    Ok(success("User auth info removed"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultBody {
    status: u16,
    #[serde(default = "one")]
    count: u64,
    #[serde(default)]
    path_prefix: String,
    method: Option<String>,
}

fn one() -> u64 {
    1
}

async fn add_fault(State(st): State<EmulatorState>, body: Bytes) -> Res {
    let b: FaultBody = bind_or_400(&body)?;
    if !(100..=599).contains(&b.status) {
        return Err(msg(400, "status must be an HTTP status code"));
    }
    st.faults().push(Fault {
        status: b.status,
        remaining: b.count,
        path_prefix: b.path_prefix,
        method: b.method.map(|m| m.to_ascii_uppercase()),
    });
    Ok(success("Fault registered"))
}

async fn clear_faults(State(st): State<EmulatorState>) -> Response {
    st.faults().clear();
    success("Faults cleared")
}

async fn list_faults(State(st): State<EmulatorState>) -> Response {
    let list: Vec<_> = st
        .faults()
        .iter()
        .map(|f| json!({"status": f.status, "remaining": f.remaining, "pathPrefix": f.path_prefix, "method": f.method}))
        .collect();
    ok(json!(list))
}

async fn stats(State(st): State<EmulatorState>) -> Response {
    let inner = &st.inner;
    ok(json!({
        "writes": st.write_count(),
        "requests": st.request_count(),
        "writeRequests": inner.write_requests.load(Ordering::SeqCst),
        "writeServiceMicros": inner.write_service_us.load(Ordering::SeqCst),
    }))
}

fn is_mutating(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

fn take_fault(st: &EmulatorState, method: &Method, path: &str) -> Option<Response> {
    let mut faults = st.faults();
    let fault = faults.iter_mut().find(|f| {
        f.remaining > 0
            && path.starts_with(&f.path_prefix)
            && f.method.as_deref().is_none_or(|m| m == method.as_str())
    })?;
    fault.remaining -= 1;
    let status = fault.status;
    faults.retain(|f| f.remaining > 0);
    drop(faults);
    let mut resp = json(status, json!({"message": "emulated fault"}));
    if status == 429 {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
    }
    Some(resp)
}

/// Middleware for every request: `/api` requests are counted, may be failed by a fault rule,
/// and mutating ones take the configured write latency: each is answered no sooner than `latency` after it
/// arrived (its own handling counts towards it), so concurrent requests overlap as they do on a server
/// whose storage is slow.
pub async fn api_layer(State(st): State<EmulatorState>, req: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let path = req.uri().path();
    if !(path == "/api" || path.starts_with("/api/")) {
        return next.run(req).await;
    }
    st.inner.requests.fetch_add(1, Ordering::SeqCst);
    let method = req.method().clone();
    if let Some(resp) = take_fault(&st, &method, path) {
        return resp;
    }
    let mutating = is_mutating(&method);
    let resp = next.run(req).await;
    if mutating {
        sleep_until_precisely(arrived + st.inner.cfg.write_latency).await;
        if resp.status().is_success() {
            st.inner.writes.fetch_add(1, Ordering::SeqCst);
        }
        let service = u64::try_from(arrived.elapsed().as_micros()).unwrap_or(u64::MAX);
        st.inner.write_requests.fetch_add(1, Ordering::SeqCst);
        st.inner.write_service_us.fetch_add(service, Ordering::SeqCst);
    }
    resp
}

/// Waits until `deadline` to within the OS timer's precision (tens of µs). tokio's timer wheel has 1 ms
/// ticks and rounds every deadline up, which would add ~0.5–1 ms to every emulated write. On a
/// multi-threaded runtime the request's own thread sleeps (`block_in_place`: its other tasks move to
/// another worker), as a Grafana goroutine waits on its database, and writes the response as soon as it
/// wakes; a current-thread runtime (unit tests) sleeps on the blocking pool instead.
async fn sleep_until_precisely(deadline: Instant) {
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    let wait = deadline - now;
    match tokio::runtime::Handle::current().runtime_flavor() {
        RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| std::thread::sleep(wait)),
        _ => {
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(wait)).await;
        }
    }
}
