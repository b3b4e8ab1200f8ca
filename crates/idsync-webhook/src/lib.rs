//! The login-webhook ingestion layer of `idsync serve`: authenticates, validates and normalises webhook
//! deliveries into [`idsync_core::LoginEvent`]s, hands them to a durable [`EventQueue`], and answers. It
//! knows nothing about LDAP, Grafana or SQL.
//!
//! # Routes
//!
//! | Route | Body | Success |
//! | --- | --- | --- |
//! | `POST /v1/events/login` | generic JSON (below), any configured source | `202 {"id", "duplicate"}` |
//! | `POST /v1/hooks/{source}` | the source's `format`: `generic`, `okta` or `keycloak` | see below |
//! | `GET /v1/hooks/{source}` | Okta's one-time verification (Okta sources only) | `200 {"verification": V}` |
//!
//! The generic form is `LoginEvent`: `{"id"?, "source", "login"?, "id_token"?, "access_token"?,
//! "saml_response"?, "occurred_at"? (RFC 3339)}`, unknown fields rejected. Exactly one of `login`,
//! `id_token` (with an optional `access_token`) or `saml_response` must be present. Only `login` is accepted
//! for now: the token and assertion forms answer 422 ("source X: token/assertion verification is not
//! available yet (OIDC/SAML support pending)") and store nothing. On `/v1/hooks/{source}` with the generic
//! format, the body's `source` must equal the URL's.
//!
//! Native formats (the exact fields used are listed under [Native formats](#native-formats)):
//! - **Okta Event Hooks**: each `user.session.start` event with `outcome.result == "SUCCESS"` becomes one
//!   event (id = the Okta event `uuid`, login = `actor.alternateId`); other events are ignored and counted.
//!   Answer: `200 {"accepted": [{"id", "duplicate"}, …], "ignored": n}` (Okta's contract asks for 200).
//!   `GET` with `X-Okta-Verification-Challenge: V` answers `200 {"verification": "V"}`, after the source's
//!   authentication like any delivery.
//! - **Keycloak** (event-listener webhooks): `type` `LOGIN` or `access.LOGIN` becomes one event (login =
//!   `details.username`, else the user id; id = the event's `id`/`uid`, else
//!   `keycloak-{realmId}-{userId}-{time}`); answer `202 {"id", "duplicate"}`. Other types and logins with an
//!   `error` answer `200 {"ignored": true, "reason"}` and store nothing.
//!
//! A `202` (or Okta's `200`) is sent only after [`EventQueue::enqueue`] returned, i.e. after the durable
//! commit. Events are idempotent by id: a redelivery answers the existing id with `"duplicate": true`.
//! Generic events sent without an `id` get one: under HMAC `hmac-<first 16 bytes of the signature, hex>`
//! (so replaying the same signed delivery is a duplicate), under a bearer token a random UUID (so senders
//! that retry should send an `id`).
//!
//! `?wait=N` (generic and Keycloak; whole seconds, capped at 30): after the enqueue, waits up to N s for
//! the event to finish ([`EventWaiter`]) and answers `200` with its status document, or the usual `202`
//! when it has not finished in time.
//!
//! # Authentication
//!
//! Every delivery, generic or native, authenticates with its **source's** credentials
//! (`[[sources]] webhook.auth`). On `/v1/events/login` the source is read from the body first (that parse
//! looks at nothing else), then the raw body is authenticated before anything else in it is used.
//!
//! **Bearer** (`kind = "bearer"`): `Authorization: Bearer <token>`. The presented token is hashed with
//! SHA-256 and compared with the configured token's hash in constant time (`subtle`), so neither content
//! nor length leaks through timing. For Okta, set the event hook's *Authentication field* to
//! `Authorization` and its *Authentication secret* to `Bearer <token>` (Okta sends the secret verbatim).
//!
//! **HMAC-SHA256** (`kind = "hmac"`, `replay_window_seconds` default 300): the sender adds
//!
//! ```text
//! X-Idsync-Timestamp: <unix time in seconds, ASCII decimal>
//! X-Idsync-Signature: sha256=<hex(HMAC-SHA256(secret, "<timestamp>.<raw body>"))>
//! ```
//!
//! where `<timestamp>` is exactly the header's value, `.` is one ASCII dot, and `<raw body>` is the request
//! body byte for byte (no re-serialisation). The signature (hex, either case) is compared in constant
//! time. A delivery is rejected with 401 when a header is missing or malformed, when the signature does not
//! match, or (checked only for a correctly signed delivery) when |now − timestamp| exceeds the replay
//! window. For the Okta verification `GET` the body is empty, so the signed string is `"<timestamp>."`.
//! [`sign`] computes the header value. In shell:
//!
//! ```text
//! ts=$(date +%s)
//! sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
//! curl -H "X-Idsync-Timestamp: $ts" -H "X-Idsync-Signature: sha256=$sig" \
//!      -H 'Content-Type: application/json' --data-binary "$body" https://idsync.example/v1/events/login
//! ```
//!
//! # Errors
//!
//! Every error is a JSON `{"error": "<message>"}` and stores nothing. Messages never contain tokens,
//! signatures, secrets or body excerpts.
//!
//! | Status | When | `reason` label |
//! | --- | --- | --- |
//! | 400 | invalid JSON, unknown field, missing `source`, invalid event (no or several forms, bad id, login or `occurred_at`), not an Okta/Keycloak delivery, bad `?wait=`, generic body's `source` ≠ URL's, missing Okta challenge header | `bad_json` |
//! | 401 | missing or malformed `Authorization`/signature headers, wrong token, signature mismatch | `unauthorized` |
//! | 401 | correctly signed but outside the replay window | `stale` |
//! | 404 | no webhook is configured for the source (on both routes) | `unknown_source` |
//! | 405 | `GET /v1/hooks/{source}` on a non-Okta source | `unsupported` |
//! | 413 | body over `max_body_bytes` (default 64 KiB; declared or actual) | `too_large` |
//! | 415 | `Content-Type` is not `application/json` (or `application/*+json`) | `bad_content_type` |
//! | 422 | `id_token`/`access_token` or `saml_response` form | `unsupported` |
//! | 503 | the queue failed: `{"error": "queue unavailable"}`; the sender retries | `queue_error` |
//!
//! Checks run in this order: (hook route: source, 404) → `?wait=` → content type → body size → (generic
//! route: JSON and `source`, 400; source, 404) → authentication → full parse and validation → enqueue.
//!
//! # Metrics and logs
//!
//! Names and labels: `idsync_webhook_events_received_total{source,format}`
//! (per delivery), `idsync_webhook_events_accepted_total{source}` (per acknowledged event),
//! `idsync_webhook_events_rejected_total{source,reason}` (per rejected delivery; `reason="ignored"` per
//! ignored native event), `idsync_webhook_ack_seconds` (receipt to commit, acknowledged deliveries). The
//! `source` label is `unknown` until a configured source is identified. Each delivery runs in a `webhook`
//! span with `route`, `format`, `source` and `event_id`; tokens, signatures and bodies are never logged.
//!
//! # Native formats
//!
//! Okta: the envelope's `eventType` (when present) must be `com.okta.event_hook` and `data.events` an
//! array; per event `eventType`, `outcome.result`, `actor.alternateId`, `uuid` and `published`
//! (→ `occurred_at`) are used. Keycloak: `type`, `error`, `details.username`, `authDetails.username`,
//! `userId`/`authDetails.userId`, `id`/`uid`, `realmId`/`authDetails.realmId` and `time` (epoch ms →
//! `occurred_at`). Keycloak's own signature headers (e.g. p2-inc's `X-Keycloak-Signature`) are not
//! checked: configure the listener to send the bearer token, or sign with the scheme above.

mod auth;
mod config;
mod formats;
mod queue;
mod reject;
mod router;
mod telemetry;

pub use auth::{SIGNATURE_HEADER, TIMESTAMP_HEADER, bearer_matches, sign};
pub use config::{
    DEFAULT_REPLAY_WINDOW_SECONDS, HookConfigError, HookFormat, Limits, SourceHook, WebhookAuth,
    WebhookConfig, validate_hooks,
};
pub use queue::{
    Clock, Enqueued, EventQueue, EventWaiter, FixedClock, NewEvent, NoWait, QueueError, SystemClock,
};
pub use router::{HOOK_PATH, LOGIN_PATH, MAX_WAIT_SECONDS, OKTA_CHALLENGE_HEADER, router};
