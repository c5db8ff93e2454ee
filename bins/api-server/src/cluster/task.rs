//! The lease task: runs [`super::lease::Lease`] against the store, starts the AMI link when
//! this instance takes the lease and stops it when the lease is lost or about to run out, and
//! hands over on a graceful stop.
//!
//! On a takeover, before connecting: the history markers (`server_stop` at the dead holder's
//! last renewal when it did not release, then `server_start`: nobody watched the PBX between
//! them) and `pbx_link {connected:false}` in the change log, so every board shows the gap; the
//! pipeline then logs in and resyncs as after any reconnect, and announces the link up through
//! the log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use domain::HistoryEvent;
use hub::PbxLink;
use store::Repository;
use store::cluster::{Cluster, LeaseState};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lease::{Action, Lease, Observed};
use super::{ClusterStatus, Fence};
use crate::writer::Writer;

/// A running AMI link (client and pipeline) that can be stopped.
pub trait RunningLink: Send {
    /// Stops the pipeline and logs off, closing the socket; bounded by the caller.
    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Starts the AMI link (client and pipeline) when this instance takes the lease.
pub type StartLink =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Box<dyn RunningLink>> + Send>> + Send + Sync>;

/// What the lease task works with.
pub struct LeaseTask {
    /// The shared state.
    pub cluster: Arc<dyn Cluster>,
    /// Where the markers go.
    pub store: Arc<dyn Repository>,
    /// Appends the link changes.
    pub writer: Writer,
    /// The machine.
    pub lease: Lease,
    /// The deadline the writer checks.
    pub fence: Arc<Fence>,
    /// For `/readyz` and `/metrics`.
    pub status: Arc<ClusterStatus>,
    /// Starts the AMI link; `None` when no PBX is configured (the lease is still held, so
    /// that a misconfigured instance is visible, but nothing connects).
    pub start_link: Option<StartLink>,
    /// How long stopping the link may take.
    pub stop_timeout: Duration,
}

fn observed(state: &LeaseState) -> Observed {
    Observed {
        holder: state.holder.clone(),
        term: state.term,
        version: state.version,
    }
}

impl LeaseTask {
    /// Runs until `cancel` fires; then, if holding the lease, stops the link, announces it
    /// down, writes `server_stop` and releases the lease so another instance takes over at
    /// once.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut link: Option<Box<dyn RunningLink>> = None;
        let mut next_renew = Instant::now();
        loop {
            match self.lease.term() {
                Some(term) => {
                    let deadline = self.lease.valid_until().unwrap_or_else(Instant::now);
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep_until(next_renew.min(deadline)) => {}
                    }
                    let now = Instant::now();
                    if self.lease.tick(now) == Action::Stop {
                        self.lost(&mut link, "its last renewal is too old").await;
                        continue;
                    }
                    if now < next_renew {
                        continue;
                    }
                    let sent = now;
                    next_renew = sent + self.lease.renew_every();
                    // The call may take until the deadline at most: past it the link stops
                    // whatever the answer.
                    let limit = deadline
                        .saturating_duration_since(sent)
                        .min(self.lease.renew_every());
                    let call = self.cluster.renew_lease(self.lease.instance(), term);
                    let outcome = match tokio::time::timeout(limit, call).await {
                        Ok(Ok(Some(_))) => Ok(true),
                        Ok(Ok(None)) => Ok(false),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "renewing the AMI lease failed");
                            Err(())
                        }
                        Err(_) => {
                            tracing::warn!(
                                ms = limit.as_millis(),
                                "renewing the AMI lease timed out"
                            );
                            Err(())
                        }
                    };
                    let action = self.lease.renewed(outcome, sent, Instant::now());
                    self.fence.set(self.lease.valid_until());
                    if action == Action::Stop {
                        let why = if outcome == Ok(false) {
                            "another instance holds it now"
                        } else {
                            "its last renewal is too old"
                        };
                        self.lost(&mut link, why).await;
                    }
                }
                None => {
                    self.contend(&mut link).await;
                    if self.lease.term().is_some() {
                        next_renew = Instant::now() + self.lease.renew_every();
                        continue;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(self.lease.watch_every()) => {}
                    }
                }
            }
        }
        self.hand_over(link).await;
    }

    /// One look at the lease as a contender, and a take when the machine says so.
    async fn contend(&mut self, link: &mut Option<Box<dyn RunningLink>>) {
        let limit = self.lease.watch_every();
        let state = match tokio::time::timeout(limit, self.cluster.lease_state()).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading the AMI lease failed");
                return;
            }
            Err(_) => return,
        };
        self.status
            .set_holder(false, state.as_ref().and_then(|s| s.holder.clone()));
        let now = Instant::now();
        if self
            .lease
            .observed(state.as_ref().map(observed).as_ref(), now)
            != Action::Take
        {
            return;
        }
        let sent = Instant::now();
        let call = self
            .cluster
            .take_lease(self.lease.instance(), state.as_ref());
        let taken = match tokio::time::timeout(limit, call).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "taking the AMI lease failed");
                return;
            }
            Err(_) => return,
        };
        let action = self.lease.took(taken.as_ref().map(observed).as_ref(), sent);
        self.fence.set(self.lease.valid_until());
        if let Action::Start { term } = action {
            self.took_over(term, state.as_ref(), link).await;
        }
    }

    async fn took_over(
        &mut self,
        term: u64,
        before: Option<&LeaseState>,
        link: &mut Option<Box<dyn RunningLink>>,
    ) {
        let instance = self.lease.instance().to_owned();
        self.status.set_holder(true, Some(instance.clone()));
        self.status.took_over();
        let previous = before.and_then(|b| b.holder.clone());
        tracing::info!(
            term,
            previous = previous.as_deref().unwrap_or("none"),
            "took the AMI lease; connecting to the PBX"
        );
        // The dead holder's watch ended at its last renewal at the latest.
        if let (Some(_), Some(b)) = (&previous, before) {
            crate::analytics::record_marker(&*self.store, HistoryEvent::ServerStop, b.renewed_at)
                .await;
        }
        crate::analytics::record_marker(&*self.store, HistoryEvent::ServerStart, domain::now())
            .await;
        // Boards show the link down until the new holder's pipeline has logged in and resynced
        // (without a PBX configured there is no link to speak of).
        if let Some(start) = &self.start_link {
            self.writer
                .announce_link(PbxLink::at(false, domain::now()))
                .await;
            *link = Some(start().await);
        }
    }

    /// The lease is gone or about to be: off the PBX at once.
    async fn lost(&mut self, link: &mut Option<Box<dyn RunningLink>>, why: &str) {
        self.fence.set(None);
        self.status.set_holder(false, None);
        tracing::warn!(reason = why, "lost the AMI lease; logging off the PBX");
        if let Some(running) = link.take()
            && tokio::time::timeout(self.stop_timeout, running.stop())
                .await
                .is_err()
        {
            tracing::warn!("the AMI link did not stop in time");
        }
    }

    /// A graceful stop: if holding the lease, stop the link, announce it down, write the
    /// `server_stop` marker and release the lease.
    async fn hand_over(mut self, link: Option<Box<dyn RunningLink>>) {
        let Some(term) = self.lease.term() else {
            return;
        };
        if let Some(running) = link
            && tokio::time::timeout(self.stop_timeout, running.stop())
                .await
                .is_err()
        {
            tracing::warn!("the AMI link did not stop in time");
        }
        if self.fence.valid_now() && self.start_link.is_some() {
            self.writer
                .announce_link(PbxLink::at(false, domain::now()))
                .await;
        }
        self.fence.set(None);
        crate::analytics::record_marker(&*self.store, HistoryEvent::ServerStop, domain::now())
            .await;
        match self
            .cluster
            .release_lease(self.lease.instance(), term)
            .await
        {
            Ok(true) => tracing::info!(term, "released the AMI lease"),
            Ok(false) => tracing::info!(term, "the AMI lease was no longer ours"),
            Err(e) => {
                tracing::warn!(error = %e, "releasing the AMI lease failed; another instance takes over after the lease time")
            }
        }
        self.lease.released();
        self.status.set_holder(false, None);
    }
}
