//! What every request handler shares: the store, the hub, the writer, counters and timers.

use std::sync::Arc;

use hub::Hub;
use store::Repository;
use tokio_util::sync::CancellationToken;

use crate::callcenter::CallCenter;
use crate::config::Timing;
use crate::error::ApiError;
use crate::health::LinkStatus;
use crate::metrics::Metrics;
use crate::writer::Writer;

/// What every handler shares.
pub struct AppState {
    /// The store, for reads.
    pub store: Arc<dyn Repository>,
    /// `embedded` or `mongodb`.
    pub store_backend: String,
    /// The store's health as the background probe last found it (what `/readyz` answers).
    pub store_health: tokio::sync::watch::Receiver<crate::health::StoreHealth>,
    /// The broadcast hub.
    pub hub: Hub,
    /// All writes go through here.
    pub writer: Writer,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The AMI link as the pipeline sees it.
    pub link: Arc<LinkStatus>,
    /// Timers (WebSocket heartbeat).
    pub timing: Timing,
    /// Fires when the server starts shutting down: WebSockets send their close frames.
    pub shutdown: CancellationToken,
    /// Notified after a user creates an extension, so the pipeline fetches its live state.
    pub created: Arc<tokio::sync::Notify>,
    /// The unfiltered `GET /api/extensions` body, built once per change.
    pub list_cache: crate::rest::ListCache,
    /// The call-center tracker the pipeline feeds (queues, pauses, calls).
    pub callcenter: Arc<CallCenter>,
    /// The AMI client PBX actions go through (`--ami-actions`); in cluster mode only the lease
    /// holder has one.
    pub ami_actions: Arc<ActionClient>,
    /// How long a pause waits for the PBX to confirm the new state.
    pub action_timeout: std::time::Duration,
    /// Cluster mode (MongoDB): the lease and the change log as this instance sees them.
    pub cluster: Option<crate::cluster::ClusterHandle>,
    /// Bounds the history and time-in-state requests computed and waiting at once.
    pub analytics: crate::analytics::AnalyticsGate,
}

impl AppState {
    /// Counts and maps a failed store read.
    pub fn store_failed(&self, e: &store::StoreError) -> ApiError {
        self.metrics.store_error(e);
        ApiError::from_store(e)
    }

    /// The stored record with `id`; a 404 naming `shown` (the id as the request wrote it) when
    /// there is none, the counted store error when the read fails.
    pub async fn record(
        &self,
        id: &domain::RecordId,
        shown: &str,
    ) -> Result<domain::Extension, ApiError> {
        self.store
            .get(id)
            .await
            .map_err(|e| self.store_failed(&e))?
            .ok_or_else(|| ApiError::no_such_extension(shown))
    }
}

/// The AMI client that PBX actions (pauses) go through, when `--ami-actions` allows them. Set
/// once at start with one instance; in cluster mode set while this instance holds the AMI
/// lease and cleared when it stops.
#[derive(Debug, Default)]
pub struct ActionClient {
    allowed: bool,
    client: std::sync::Mutex<Option<ami_proto::client::ClientHandle>>,
}

impl ActionClient {
    /// Actions allowed (`--ami-actions` with a PBX configured) or not; no client yet.
    pub fn new(allowed: bool) -> Self {
        Self {
            allowed,
            client: std::sync::Mutex::default(),
        }
    }

    /// Whether PBX actions are allowed at all: `--ami-actions`, and a PBX to send them to
    /// (`--ami-user`).
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The client actions go through now (none when they are not allowed, or no link runs
    /// here).
    pub fn get(&self) -> Option<ami_proto::client::ClientHandle> {
        if !self.allowed {
            return None;
        }
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets (or clears) the client.
    pub fn set(&self, client: Option<ami_proto::client::ClientHandle>) {
        *self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }
}
