//! The seams behind the webhook: the durable event queue, the optional waiter for `?wait=`, and the clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use idsync_core::LoginEvent;
use serde::Serialize;

/// An authenticated, normalised login event on its way into the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The sender's event id, or one generated here (also set as `event.id`).
    pub id: String,
    pub event: LoginEvent,
    /// When this delivery was received (the router's clock).
    pub received_at: DateTime<Utc>,
}

/// What the queue made of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The event's id in the queue (for a duplicate, the existing event's id).
    pub id: String,
    /// The queue already held an event with this id; nothing new was stored.
    pub duplicate: bool,
}

/// The queue could not take the event; the sender is told to retry (503). The message is logged, never sent.
#[derive(Debug, thiserror::Error)]
#[error("event queue unavailable: {cause}")]
pub struct QueueError {
    #[source]
    cause: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl QueueError {
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        QueueError { cause: cause.into() }
    }
}

/// The durable queue behind the webhook (implemented on top of the SQL store).
///
/// Object-safe, so `Arc<dyn EventQueue>` works as well as a concrete type.
pub trait EventQueue: Send + Sync + 'static {
    /// Stores `event`. Resolves only once the event is durably committed. Idempotent by `event.id`: a
    /// duplicate resolves to the existing event's id with `duplicate = true` and stores nothing.
    fn enqueue(&self, event: NewEvent) -> BoxFuture<'_, Result<Enqueued, QueueError>>;
}

/// Optional wait support for `?wait=SECONDS`.
pub trait EventWaiter: Send + Sync + 'static {
    /// Resolves with the event's status document once it is finished (applied or dead), or `None` when
    /// `timeout` elapses first (or waiting is not supported).
    fn wait<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, Option<serde_json::Value>>;
}

/// A waiter that never waits: `?wait=` always answers 202 straight away.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWait;

impl EventWaiter for NoWait {
    fn wait<'a>(&'a self, _id: &'a str, _timeout: Duration) -> BoxFuture<'a, Option<serde_json::Value>> {
        Box::pin(std::future::ready(None))
    }
}

/// The time source (HMAC replay window, `received_at`).
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant (tests).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}
