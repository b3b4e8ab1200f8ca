//! The webhook's durable queue on the store, with group commit: concurrent deliveries are batched into one
//! transaction, and each is acknowledged only after that transaction committed. Also the waiters behind
//! `?wait=` and `GET /v1/events/{id}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use idsync_store::{AuditFilter, EventRecord, EventState, Store};
use idsync_webhook::{Enqueued, EventQueue, EventWaiter, NewEvent, QueueError};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

/// Deliveries per transaction, at most.
const MAX_BATCH: usize = 512;

type Pending = (NewEvent, oneshot::Sender<Result<Enqueued, QueueError>>);

/// The queue the webhook router writes to.
pub struct StoreQueue {
    sender: mpsc::Sender<Pending>,
}

impl StoreQueue {
    /// Starts the writer task. `work_ready` is notified after each commit so workers start at once.
    pub fn start(store: Arc<Store>, work_ready: Arc<Notify>) -> (StoreQueue, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(8 * MAX_BATCH);
        let writer = tokio::spawn(write_batches(store, receiver, work_ready));
        (StoreQueue { sender }, writer)
    }
}

impl EventQueue for StoreQueue {
    fn enqueue(&self, event: NewEvent) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.sender
                .send((event, reply))
                .await
                .map_err(|_| QueueError::new("the queue writer stopped"))?;
            answer
                .await
                .map_err(|_| QueueError::new("the queue writer stopped"))?
        })
    }
}

/// Group commit: take what is waiting (up to MAX_BATCH), write it in one transaction, answer everyone.
async fn write_batches(store: Arc<Store>, mut receiver: mpsc::Receiver<Pending>, work_ready: Arc<Notify>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let events: Vec<idsync_store::NewEvent> = batch.iter().map(|(event, _)| stored(event)).collect();
        let result = store.enqueue_events(&events).await;
        match result {
            Ok(enqueued) => {
                for ((_, reply), done) in batch.drain(..).zip(enqueued) {
                    let _ = reply.send(Ok(Enqueued {
                        id: done.id,
                        duplicate: done.duplicate,
                    }));
                }
                work_ready.notify_waiters();
                metrics::gauge!("idsync_queue_batch_size").set(events.len() as f64);
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "could not commit login events");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(QueueError::new(e.to_string())));
                }
            }
        }
    }
}

/// The stored form: the event without any credential (tokens and assertions are verified before queueing
/// by the OIDC/SAML sources, and never stored).
fn stored(event: &NewEvent) -> idsync_store::NewEvent {
    let login = event.event.login.clone().unwrap_or_default();
    let payload = json!({
        "source": event.event.source,
        "login": login,
        "occurred_at": event.event.occurred_at,
    });
    idsync_store::NewEvent {
        id: event.id.clone(),
        source: event.event.source.clone(),
        login,
        payload,
        received_at: event.received_at,
    }
}

/// Wakes `?wait=` callers when their event finishes, and renders an event's status document.
pub struct Waiters {
    store: Arc<Store>,
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    pub fn new(store: Arc<Store>) -> Waiters {
        Waiters {
            store,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Called by a worker once an event is done or dead.
    pub fn finished(&self, id: &str) {
        let notify = self.waiting.lock().ok().and_then(|mut map| map.remove(id));
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// The event's state and the changes it applied; None when the id is unknown.
    pub async fn document(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let Some(event) = self.store.event(id).await? else {
            return Ok(None);
        };
        let changes = match event.run_id {
            Some(run) => self
                .store
                .audit(AuditFilter {
                    run: Some(run),
                    login: None,
                    limit: 1000,
                })
                .await?
                .into_iter()
                .map(|a| json!({ "change": a.description, "result": a.result.as_str(), "error": a.error }))
                .collect(),
            None => Vec::new(),
        };
        Ok(Some(render(&event, changes)))
    }
}

fn render(event: &EventRecord, changes: Vec<Value>) -> Value {
    json!({
        "id": event.id,
        "source": event.source,
        "login": event.login,
        "state": event.state.as_str(),
        "attempts": event.attempts,
        "received_at": event.received_at.to_rfc3339(),
        "next_attempt_at": (event.state == EventState::Queued).then(|| event.next_attempt_at.to_rfc3339()),
        "finished_at": event.finished_at.map(|t| t.to_rfc3339()),
        "last_error": event.last_error,
        "run": event.run_id.map(|r| r.0),
        "changes": changes,
    })
}

impl EventWaiter for Waiters {
    fn wait<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async move {
            // Register before looking, so a finish between the look and the wait is not missed.
            let notify = self.waiting.lock().ok().map(|mut map| {
                map.entry(id.to_string())
                    .or_insert_with(|| Arc::new(Notify::new()))
                    .clone()
            })?;
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let finished = |doc: &Value| matches!(doc["state"].as_str(), Some("done" | "dead"));
            if let Ok(Some(doc)) = self.document(id).await
                && finished(&doc)
            {
                return Some(doc);
            }
            tokio::time::timeout(timeout, notified).await.ok()?;
            self.document(id).await.ok().flatten().filter(finished)
        })
    }
}
