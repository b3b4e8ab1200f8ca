//! In-memory emulator of the Grafana HTTP API subset that idsync calls: users, orgs, org
//! memberships, teams, team memberships and service accounts, with Grafana's status codes,
//! bodies and quirks as documented in `shared/reference/grafana-api.md`.
//!
//! Use it in-process with [`Emulator::spawn`] (binds `127.0.0.1:0`) or build the bare
//! [`router`] for a custom server. Non-Grafana test hooks live under `/emulator/` (see
//! [`hooks`]). Dropping an [`Emulator`] stops it as well; [`Emulator::shutdown`] waits for it.

// Handlers return `Result<Response, Response>` (both arms are finished HTTP answers, the axum
// idiom); boxing the error arm everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auth;
pub mod hooks;
pub mod model;
pub mod resp;
pub mod util;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::hooks::Fault;
use crate::model::Db;

/// Emulator settings.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Login of the server admin (user id 1).
    pub admin_user: String,
    /// Password of the server admin.
    pub admin_password: String,
    /// Delay applied to every mutating `/api` request (POST/PUT/PATCH/DELETE) before it is answered.
    pub write_latency: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            admin_user: "admin".to_string(),
            admin_password: "admin".to_string(),
            write_latency: Duration::ZERO,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: EmulatorConfig,
    /// Readers (GETs, authentication) share the database; mutations take it exclusively.
    pub(crate) db: RwLock<Db>,
    pub(crate) writes: AtomicU64,
    pub(crate) requests: AtomicU64,
    /// Mutating `/api` requests answered (any status) and their summed service time, arrival to response.
    pub(crate) write_requests: AtomicU64,
    pub(crate) write_service_us: AtomicU64,
    pub(crate) faults: Mutex<Vec<Fault>>,
}

/// Shared emulator state (cheap to clone); the axum router state.
#[derive(Clone)]
pub struct EmulatorState {
    pub(crate) inner: Arc<Inner>,
}

impl EmulatorState {
    /// A fresh Grafana: org 1 "Main Org." and the configured server admin (user 1).
    pub fn new(cfg: EmulatorConfig) -> EmulatorState {
        let db = Db::new(&cfg.admin_user, &cfg.admin_password);
        EmulatorState {
            inner: Arc::new(Inner {
                cfg,
                db: RwLock::new(db),
                writes: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                write_requests: AtomicU64::new(0),
                write_service_us: AtomicU64::new(0),
                faults: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Mutating `/api` requests (POST/PUT/PATCH/DELETE) that returned 2xx.
    pub fn write_count(&self) -> u64 {
        self.inner.writes.load(Ordering::SeqCst)
    }

    /// All `/api` requests received (including rejected and fault-injected ones).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Mutating `/api` requests answered, whatever their status (fault-injected ones excepted).
    pub fn write_request_count(&self) -> u64 {
        self.inner.write_requests.load(Ordering::SeqCst)
    }

    /// The configuration the state was created with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.inner.cfg
    }

    /// Locks the database exclusively (for mutations). Never hold the guard across an `.await`.
    pub fn db(&self) -> RwLockWriteGuard<'_, Db> {
        self.inner.db.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the database shared (for reads; concurrent readers do not block each other). Never
    /// hold the guard across an `.await`.
    pub fn db_read(&self) -> RwLockReadGuard<'_, Db> {
        self.inner.db.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Vec<Fault>> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The full application: Grafana `/api` routes, `/emulator` hooks, counters, faults and latency.
pub fn router(state: EmulatorState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(hooks::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hooks::api_layer,
        ))
        .with_state(state)
}

/// A running emulator bound to a local TCP port.
pub struct Emulator {
    addr: SocketAddr,
    state: EmulatorState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Binds 127.0.0.1:0 and serves in a background tokio task.
    pub async fn spawn(cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Emulator::serve_on(listener, cfg).await
    }

    /// Serves on an already bound listener in a background tokio task.
    pub async fn serve_on(listener: TcpListener, cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        let addr = listener.local_addr()?;
        let state = EmulatorState::new(cfg);
        let app = router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                // Either an explicit shutdown or the Emulator being dropped.
                let _ = stopped.await;
            };
            // TCP_NODELAY on every connection, as Go's net/http (so Grafana) sets it: without it a response
            // written in two segments can wait for the client's delayed ACK (up to 40 ms on Linux).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::warn!(error = %e, "grafana-emulator server error");
            }
        });
        Ok(Emulator {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Mutating `/api` requests (POST/PUT/PATCH/DELETE) that returned 2xx.
    pub fn write_count(&self) -> u64 {
        self.state.write_count()
    }

    /// All `/api` requests received.
    pub fn request_count(&self) -> u64 {
        self.state.request_count()
    }

    /// Mutating `/api` requests answered, whatever their status.
    pub fn write_request_count(&self) -> u64 {
        self.state.write_request_count()
    }

    /// The shared state (database access for white-box assertions).
    pub fn state(&self) -> &EmulatorState {
        &self.state
    }

    /// Stops serving; afterwards the port refuses connections.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
            let _ = (&mut self.task).await;
        }
    }
}
