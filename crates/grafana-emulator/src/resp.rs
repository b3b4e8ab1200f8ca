//! Grafana's response envelopes (reference §0): `{"message"}`, `+traceID`, errutil bodies, RBAC denials.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::util::access_error_id;

/// Handler result: both arms are finished HTTP responses.
pub type Res = Result<Response, Response>;

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Any JSON body with a status.
pub fn json(code: u16, body: Value) -> Response {
    (status(code), axum::Json(body)).into_response()
}

/// 200 with a JSON body.
pub fn ok(body: Value) -> Response {
    json(200, body)
}

/// 200 with any serialisable body, encoded straight to bytes (no `Value` tree); the same
/// `Content-Type` as [`ok`].
pub fn ok_ser<T: Serialize + ?Sized>(body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => ok_bytes(bytes),
        Err(e) => msg(500, &format!("failed to encode the response: {e}")),
    }
}

/// 200 with an already encoded JSON body.
pub fn ok_bytes(body: Vec<u8>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// `response.Success(msg)`.
pub fn success(msg: &str) -> Response {
    json(200, json!({ "message": msg }))
}

/// `response.Error(st, msg, nil)`: `{"message": msg}`.
pub fn msg(code: u16, message: &str) -> Response {
    json(code, json!({ "message": message }))
}

/// `response.Error(st, msg, err)` with a non-nil error: `{"message": msg, "traceID": ""}`.
pub fn msg_trace(code: u16, message: &str) -> Response {
    json(code, json!({ "message": message, "traceID": "" }))
}

/// `response.Err(errutil)`: `{"statusCode","messageId","message"}`.
pub fn errutil(code: u16, message_id: &str, message: &str) -> Response {
    json(
        code,
        json!({ "statusCode": code, "messageId": message_id, "message": message }),
    )
}

/// RBAC middleware denial (403) naming the evaluator.
pub fn access_denied(action: &str) -> Response {
    json(
        403,
        json!({
            "title": "Access denied",
            "message": format!(
                "You'll need additional permissions to perform this action. Permissions needed: {action}"
            ),
            "accessErrorId": access_error_id(),
        }),
    )
}

/// `web.Bind` failure.
pub fn bad_request_data() -> Response {
    msg_trace(400, "bad request data")
}

/// Router-level not found for unknown routes.
pub fn not_found() -> Response {
    msg(404, "Not found")
}

/// The request body is not valid JSON for the expected shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindError;

/// Decodes a JSON request body like Grafana's `web.Bind`: an empty body is an empty object.
pub fn bind<T: DeserializeOwned>(body: &[u8]) -> Result<T, BindError> {
    let trimmed = body.iter().all(|b| b.is_ascii_whitespace());
    let data: &[u8] = if trimmed { b"{}" } else { body };
    serde_json::from_slice(data).map_err(|_| BindError)
}

/// `bind` with the standard 400 `bad request data` rejection.
pub fn bind_or_400<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    bind(body).map_err(|BindError| bad_request_data())
}
