//! The single writer: every store write of the server (user edits from REST, statuses from the
//! pipeline) runs here, one after another, and each change is published to the hub right after
//! the store has it.
//!
//! Running them in one task is what keeps the hub's view equal to the store: when an edit and
//! a status update of the same record raced as independent tasks, the one that wrote first
//! could publish last and leave subscribers with a stale record. A task that owns the writes
//! orders them without holding any lock across an `.await`. Writes are rare next to reads
//! (reads go straight to the store), and the pipeline is sequential anyway, so one lane costs
//! nothing that matters.
//!
//! While the store is down (its background probe failed, [`crate::health::StoreProbe`]) the
//! writer refuses at once: a user edit answers 503 without being tried, a status batch fails
//! without waiting (the pipeline resyncs once the store answers again). Every store operation
//! is bounded by the store timeout: an edit that waited longer than that in the queue is refused
//! untried, and one whose store operation outlives it is answered 503 saying that the outcome
//! is unknown, never as a success.
//!
//! With several instances on one MongoDB database (cluster mode, [`crate::cluster`]) the store
//! write is the same, but the changes of each job are not published to the hub: they are
//! handed, in order, to the appender task (`LogSink::run`), which appends each job's changes
//! to the shared change log in one call, from which every instance's follower publishes them
//! under the log's numbers. The writer does not wait for the log (a slow or failing append
//! never holds up the store writes behind it); a user edit is answered once this instance's
//! hub shows it, as with one instance. Status and call-center writes (and the PBX link) are
//! made only while this instance's lease is valid ([`crate::cluster::Fence`]), checked again
//! just before the append. With the embedded store nothing of this runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::callcenter::CallCenterView;
use domain::{Extension, ExtensionNumber, ExtensionPatch, NewExtension, Observation, RecordId};
use hub::{Change, Hub, PbxLink};
use store::{OutcomeUnknown, Repository, StatusEffect, StatusOutcome, StoreError, UpdateOutcome};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::ApiError;
use crate::health::StoreHealth;
use crate::metrics::{Metrics, WriteCause};

/// How many writes may wait for the writer before callers wait to enqueue.
const QUEUE: usize = 1024;

enum Job {
    Create(NewExtension, Reply<Extension>),
    Update(RecordId, ExtensionPatch, Reply<Extension>),
    Delete(RecordId, Reply<Extension>),
    Statuses(
        Vec<(ExtensionNumber, Observation, WriteCause)>,
        oneshot::Sender<Vec<Result<StatusEffect, StoreError>>>,
    ),
    CallCenter(
        Vec<(ExtensionNumber, CallCenterView)>,
        oneshot::Sender<Vec<Result<bool, StoreError>>>,
    ),
    /// Reads every stored record and publishes those the hub lacks (after a start without the
    /// store); answers how many.
    Load(oneshot::Sender<Result<usize, StoreError>>),
    /// Appends a PBX link change to the change log (cluster mode only).
    Link(PbxLink, oneshot::Sender<()>),
}

/// Where the writer's changes go in cluster mode: the shared change log.
#[derive(Clone)]
pub struct LogSink {
    /// The cluster's shared state.
    pub cluster: Arc<dyn store::cluster::Cluster>,
    /// This instance's name, stored with every entry.
    pub instance: String,
    /// The lease's deadline: PBX changes are appended only before it.
    pub fence: Arc<crate::cluster::Fence>,
    /// Woken after every append, so the local follower reads at once.
    pub wake: Arc<tokio::sync::Notify>,
    /// Counters for `/readyz` and `/metrics`.
    pub status: Arc<crate::cluster::ClusterStatus>,
}

/// One job's changes on their way to the change log, with the answers that wait for them.
struct Batch {
    /// Each change, with whether it is the PBX's (and so needs the lease).
    changes: Vec<(Change, bool)>,
    answers: Vec<Answer>,
}

impl Batch {
    fn answer(self) {
        for answer in self.answers {
            answer.send();
        }
    }
}

impl LogSink {
    /// The appender (cluster mode): appends each job's changes in the writer's order, wakes
    /// the local follower, and answers the job's callers once this instance's hub shows the
    /// changes (waiting at most `timeout`). Ends after the writer, once the batches handed
    /// over are done.
    async fn run(self, mut batches: mpsc::Receiver<Batch>, timeout: Duration) {
        while let Some(batch) = batches.recv().await {
            let appended = self.append(&batch.changes, timeout).await;
            if let Some(last) = appended
                && !batch.answers.is_empty()
                && !self.status.published(last, timeout).await
            {
                tracing::warn!(
                    seq = last,
                    "this instance's board did not show an edit within the store timeout; answering anyway"
                );
            }
            batch.answer();
        }
    }

    /// Appends one job's changes in one call, then wakes the local follower. PBX changes are
    /// appended only while the lease is valid (a process frozen past its deadline must not
    /// write after it wakes up), checked before every attempt; a failed append is tried twice
    /// more and then counted and logged (the change is in the store, and reaches the boards
    /// with their next reload). Answers the number of the last entry appended, if any.
    async fn append(&self, items: &[(Change, bool)], timeout: Duration) -> Option<u64> {
        let mut valid = self.fence.valid_now();
        let mut payloads = self.payloads(items, valid);
        let mut attempt = 0;
        let appended = loop {
            if payloads.is_empty() {
                break None;
            }
            attempt += 1;
            let call = self
                .cluster
                .append_changes(&self.instance, payloads.clone());
            let why = match tokio::time::timeout(timeout + TIMEOUT_MARGIN, call).await {
                Ok(Ok(numbers)) => break Some(*numbers.end()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} ms", timeout.as_millis()),
            };
            let n = payloads.len();
            if attempt >= 3 {
                self.status.append_failed();
                tracing::error!(changes = n, error = %why, "appending to the change log failed; other instances see these changes at their next reload");
                break None;
            }
            tracing::warn!(changes = n, error = %why, attempt, "appending to the change log failed; retrying");
            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            if valid && !self.fence.valid_now() {
                // The lease ran out meanwhile: the PBX's changes are no longer ours to append.
                valid = false;
                payloads = self.payloads(items, false);
            }
        };
        self.wake.notify_one();
        appended
    }

    /// The log form of the changes to append: the PBX's only while `valid` (the others are
    /// counted and said to be left out).
    fn payloads(&self, items: &[(Change, bool)], valid: bool) -> Vec<String> {
        let mut payloads = Vec::with_capacity(items.len());
        let mut fenced = 0u64;
        for (change, needs_lease) in items {
            if *needs_lease && !valid {
                fenced += 1;
                continue;
            }
            match serde_json::to_string(change) {
                Ok(text) => payloads.push(text),
                Err(e) => {
                    tracing::error!(error = %e, kind = change.kind(), "a change could not be serialized for the change log")
                }
            }
        }
        if fenced > 0 {
            self.status.fenced(fenced);
            tracing::warn!(
                changes = fenced,
                "PBX changes not appended: this instance's AMI lease ran out"
            );
        }
        payloads
    }
}

/// At most this many queued user edits go to the store together.
const MAX_EDIT_GROUP: usize = 256;

/// Where an edit's answer goes, and when the edit was queued.
struct Reply<T> {
    tx: oneshot::Sender<Result<T, StoreError>>,
    queued: Instant,
}

impl<T> Reply<T> {
    fn new(tx: oneshot::Sender<Result<T, StoreError>>) -> Self {
        Self {
            tx,
            queued: Instant::now(),
        }
    }

    /// Answers; a caller that gave up does not undo the write.
    fn send(self, answer: Result<T, StoreError>) {
        let _ = self.tx.send(answer);
    }
}

/// Added to the store timeout before the writer stops waiting for an operation, so that the
/// MongoDB driver's server selection (bounded by the store timeout itself) fails first: its
/// failure says the operation was never sent.
const TIMEOUT_MARGIN: Duration = Duration::from_millis(250);

/// A user edit the store has done (or refused) and that is not published or answered yet.
enum Stored {
    Created(Reply<Extension>, Result<Extension, StoreError>),
    Updated(Reply<Extension>, Result<UpdateOutcome, StoreError>),
    Deleted(Reply<Extension>, Result<Extension, StoreError>),
    /// A link change, answered once it is flushed.
    Linked(oneshot::Sender<()>),
    /// Already answered.
    Answered,
}

impl Stored {
    /// Publishes the change (when there is one) and answers what to tell the caller, once the
    /// job's changes are flushed ([`Task::flush_and_answer`]).
    fn finish(self, task: &Task) -> Option<Answer> {
        match self {
            Stored::Created(reply, r) => Some(Answer::Edit(Box::new((reply, task.created(r))))),
            Stored::Updated(reply, r) => Some(Answer::Edit(Box::new((reply, task.updated(r))))),
            Stored::Deleted(reply, r) => Some(Answer::Edit(Box::new((reply, task.deleted(r))))),
            Stored::Linked(reply) => Some(Answer::Link(reply)),
            Stored::Answered => None,
        }
    }
}

/// An answer held until the job's changes are flushed.
enum Answer {
    /// A user edit's (boxed: a link's answer is a pointer).
    Edit(Box<(Reply<Extension>, Result<Extension, StoreError>)>),
    /// A link change's.
    Link(oneshot::Sender<()>),
}

impl Answer {
    /// A caller that gave up (a client that disconnected) does not undo its write; nobody
    /// needs the answer then.
    fn send(self) {
        match self {
            Answer::Edit(edit) => {
                let (reply, answer) = *edit;
                reply.send(answer);
            }
            Answer::Link(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

/// A handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    /// The hub, when changes are published to it directly (one instance, no change log).
    direct: Option<Hub>,
}

/// The writer task's side.
struct Task {
    store: Arc<dyn Repository>,
    hub: Hub,
    metrics: Arc<Metrics>,
    /// `last_seen`-only refreshes held back (never held across an `.await`).
    seen: Mutex<SeenRefreshes>,
    /// The store's health as the background probe last found it.
    health: watch::Receiver<StoreHealth>,
    /// How long one store operation may take.
    timeout: Duration,
    /// Cluster mode: the change log the changes go to instead of the hub.
    log: Option<LogSink>,
    /// Cluster mode: the changes of the current job, with whether each is the PBX's (and so
    /// needs the lease), appended together when the job is done.
    pending: Mutex<Vec<(Change, bool)>>,
    /// Cluster mode: where each job's changes go, in order ([`LogSink::run`]).
    appender: Option<mpsc::Sender<Batch>>,
}

/// `last_seen`-only refreshes reach the hub at most once per extension per interval: the PBX
/// repeats a status often, and each refresh published as a full `extension_status_updated`
/// record filled the ring and every socket for a "seen 4 s ago" label. A refresh that comes
/// sooner is held (the newest one per record) and published when its interval is over; any
/// other change of the record, which carries the newer `last_seen` anyway, replaces it.
struct SeenRefreshes {
    interval: Duration,
    /// When each record's refresh was last published.
    published: HashMap<RecordId, Instant>,
    /// The newest held-back refresh of each record.
    held: HashMap<RecordId, Extension>,
}

impl SeenRefreshes {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            published: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// Whether `record`'s refresh may be published now; if not, it is held.
    fn admit(&mut self, record: &Extension, now: Instant) -> bool {
        let due = self
            .published
            .get(&record.id)
            .is_none_or(|at| now.duration_since(*at) >= self.interval);
        if due {
            self.published.insert(record.id.clone(), now);
            self.held.remove(&record.id);
        } else {
            self.held.insert(record.id.clone(), record.clone());
        }
        due
    }

    /// A change of record `id` is being published: a held refresh of it is outdated.
    fn superseded(&mut self, id: &RecordId) {
        self.held.remove(id);
    }

    /// The held refreshes whose interval is over, now published; forgets publication times
    /// old enough not to matter.
    fn due(&mut self, now: Instant) -> Vec<Extension> {
        let interval = self.interval;
        self.published
            .retain(|_, at| now.duration_since(*at) < interval);
        let mut out = Vec::new();
        let published = &mut self.published;
        self.held.retain(|id, record| {
            if published.contains_key(id) {
                return true;
            }
            published.insert(id.clone(), now);
            out.push(record.clone());
            false
        });
        out
    }
}

fn unavailable(why: String) -> StoreError {
    StoreError::Unavailable {
        cause: Arc::new(std::io::Error::other(why)),
    }
}

/// Maps a failed edit: one that may still be applied says so.
fn edit_error(e: &StoreError) -> ApiError {
    match e {
        StoreError::Unavailable { cause } if e.outcome_unknown() => {
            tracing::warn!(error = %e, "user edit failed; its outcome is unknown");
            ApiError::Unavailable(format!(
                "The store did not answer ({cause}). Reload to see whether it was \
                 applied before trying again."
            ))
        }
        _ => ApiError::from_store(e),
    }
}

fn gone() -> StoreError {
    // The writer only stops at shutdown, after which the store takes no more writes.
    StoreError::Unavailable {
        cause: Arc::new(std::io::Error::other("the server is shutting down")),
    }
}

/// Maps a store error of an operation on record `id`, naming the id when it is not there.
fn by_id(id: &str, e: &StoreError) -> ApiError {
    if e.is_not_found() {
        ApiError::no_such_extension(id)
    } else {
        edit_error(e)
    }
}

impl Writer {
    /// Starts the writer task. It ends when every handle is dropped, after finishing the jobs
    /// already queued (and, in cluster mode, appending their changes). `last_seen`-only
    /// refreshes reach the hub at most once per extension per `seen_interval`. `health` is the
    /// store probe's; `timeout` bounds each store operation. With `log` (cluster mode) changes
    /// go to the change log instead of `hub`.
    pub fn spawn(
        store: Arc<dyn Repository>,
        hub: Hub,
        metrics: Arc<Metrics>,
        seen_interval: Duration,
        health: watch::Receiver<StoreHealth>,
        timeout: Duration,
        log: Option<LogSink>,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let direct = log.is_none().then(|| hub.clone());
        let (appender, appended) = match &log {
            Some(sink) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                (Some(tx), Some(tokio::spawn(sink.clone().run(rx, timeout))))
            }
            None => (None, None),
        };
        let task = Task {
            store,
            hub,
            metrics,
            seen: Mutex::new(SeenRefreshes::new(seen_interval)),
            health,
            timeout,
            log,
            pending: Mutex::new(Vec::new()),
            appender,
        };
        let run = async move {
            task.run(rx).await;
            // The appender ends once the writer has dropped its sender, after the last batch.
            if let Some(appended) = appended {
                let _ = appended.await;
            }
        };
        (Writer { jobs, direct }, tokio::spawn(run))
    }

    /// Tells clients the PBX link changed: published at once with one instance, appended to
    /// the change log (in order with the writes before it, and only while the lease is valid)
    /// in cluster mode.
    pub async fn announce_link(&self, link: PbxLink) {
        match &self.direct {
            Some(hub) => {
                hub.publish(Change::PbxLink(link));
            }
            None => self.ask(|tx| Job::Link(link, tx), || ()).await,
        }
    }

    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<T>) -> Job,
        closed: impl FnOnce() -> T,
    ) -> T {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(job(tx)).await.is_err() {
            return closed();
        }
        rx.await.unwrap_or_else(|_| closed())
    }

    /// Creates a record and publishes `extension_created`.
    pub async fn create(&self, new: NewExtension) -> Result<Extension, ApiError> {
        self.ask(|tx| Job::Create(new, Reply::new(tx)), || Err(gone()))
            .await
            .map_err(|e| edit_error(&e))
    }

    /// Edits a record and publishes `extension_updated` when something changed.
    pub async fn update(&self, id: RecordId, patch: ExtensionPatch) -> Result<Extension, ApiError> {
        let shown = id.to_string();
        self.ask(|tx| Job::Update(id, patch, Reply::new(tx)), || Err(gone()))
            .await
            .map_err(|e| by_id(&shown, &e))
    }

    /// Deletes a record and publishes `extension_deleted`.
    pub async fn delete(&self, id: RecordId) -> Result<(), ApiError> {
        let shown = id.to_string();
        self.ask(|tx| Job::Delete(id, Reply::new(tx)), || Err(gone()))
            .await
            .map(|_| ())
            .map_err(|e| by_id(&shown, &e))
    }

    /// Applies many observations in order, in as few store transactions as the backend
    /// allows (a whole state list in one), publishing each real change in order (a `last_seen`
    /// refresh at most once per extension per interval). Answers what the store did with each, as the store says it
    /// ([`StatusEffect`]); an extension the store does not hold is [`StoreError::NotFound`].
    pub async fn apply_statuses(
        &self,
        observations: Vec<(ExtensionNumber, Observation, WriteCause)>,
    ) -> Vec<Result<StatusEffect, StoreError>> {
        let n = observations.len();
        self.ask(
            |tx| Job::Statuses(observations, tx),
            || (0..n).map(|_| Err(gone())).collect(),
        )
        .await
    }

    /// Writes the call-center fields of many extensions in order (one store write for each
    /// that really changed, in as few transactions as the backend allows) and publishes each
    /// change as `extension_status_updated`, in order with the status changes. Answers, for
    /// each, whether it changed; an extension the store does not hold is
    /// [`StoreError::NotFound`].
    pub async fn set_call_centers(
        &self,
        views: Vec<(ExtensionNumber, CallCenterView)>,
    ) -> Vec<Result<bool, StoreError>> {
        let n = views.len();
        self.ask(
            |tx| Job::CallCenter(views, tx),
            || (0..n).map(|_| Err(gone())).collect(),
        )
        .await
    }

    /// Publishes every stored record the hub does not have yet: for a server that started
    /// while the store did not answer, once it does. Answers how many were published.
    pub async fn load_missing(&self) -> Result<usize, StoreError> {
        self.ask(Job::Load, || Err(gone())).await
    }
}

impl Job {
    fn is_edit(&self) -> bool {
        !matches!(
            self,
            Job::Statuses(..) | Job::CallCenter(..) | Job::Load(_) | Job::Link(..)
        )
    }
}

impl Task {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let mut held = None;
        // A held refresh waits at most a quarter interval past its due time.
        let period = (self.seen().interval / 4).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let job = match held.take() {
                Some(job) => job,
                None => tokio::select! {
                    job = jobs.recv() => match job {
                        Some(job) => job,
                        None => break,
                    },
                    _ = ticker.tick() => {
                        self.publish_held_refreshes();
                        self.flush_and_answer(Vec::new()).await;
                        continue;
                    }
                },
            };
            if !job.is_edit() {
                let answer = self.one(job).await;
                self.flush_and_answer(answer.into_iter().collect()).await;
                continue;
            }
            // User edits already waiting behind this one (a seeder run through the API sends
            // many at once) go to the store together, so it commits them as one group instead
            // of one durable commit each; answers and publications stay in queue order.
            let mut edits = vec![job];
            while edits.len() < MAX_EDIT_GROUP {
                match jobs.try_recv() {
                    Ok(next) if next.is_edit() => edits.push(next),
                    Ok(next) => {
                        held = Some(next);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let answers = self.edits(edits).await;
            self.flush_and_answer(answers).await;
        }
    }

    /// Hands the job's changes on and answers its callers. With one instance the changes are
    /// published already: answered at once. In cluster mode the appender ([`LogSink::run`])
    /// appends them in the writer's order and answers once this instance's hub has published
    /// them, so that a client sees its edit on its own instance's board as soon as it has the
    /// answer, as with one instance; the writer goes on meanwhile, so a slow or failing change
    /// log never holds up the store writes queued behind it.
    async fn flush_and_answer(&self, answers: Vec<Answer>) {
        let Some(appender) = &self.appender else {
            for answer in answers {
                answer.send();
            }
            return;
        };
        let changes = std::mem::take(&mut *self.pending());
        let batch = Batch { changes, answers };
        if batch.changes.is_empty() {
            batch.answer();
        } else if let Err(mpsc::error::SendError(batch)) = appender.send(batch).await {
            // The appender ends only after the writer's loop, so this cannot happen; if it
            // did, the callers would still be answered.
            batch.answer();
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<(Change, bool)>> {
        // Only pushes and a take: consistent even after a panic.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cluster mode: why PBX writes must not be made now (the lease is not valid), if so.
    fn not_holder(&self) -> Option<String> {
        let log = self.log.as_ref()?;
        (!log.fence.valid_now()).then(|| {
            format!(
                "instance {} does not hold the AMI lease now; PBX writes are the holder's",
                log.instance
            )
        })
    }

    /// Runs one job: its store half, then its publishing half; answers a user edit's answer.
    async fn one(&self, job: Job) -> Option<Answer> {
        self.store_edit(job).await.finish(self)
    }

    /// Runs several user edits at once. Edits that could depend on each other (two of the
    /// same record, or a deletion and a creation that might reuse its number) would race, so
    /// only a group of one kind, each for a different record, runs at once; any other group
    /// runs one by one. Answers their answers, in queue order.
    async fn edits(&self, edits: Vec<Job>) -> Vec<Answer> {
        let mut seen = std::collections::HashSet::new();
        let one_kind = edits
            .windows(2)
            .all(|w| std::mem::discriminant(&w[0]) == std::mem::discriminant(&w[1]));
        let independent = one_kind
            && edits.iter().all(|job| match job {
                Job::Create(new, _) => seen.insert(new.extension.to_string()),
                Job::Update(id, ..) | Job::Delete(id, _) => seen.insert(id.to_string()),
                Job::Statuses(..) | Job::CallCenter(..) | Job::Load(_) | Job::Link(..) => false,
            });
        if !independent {
            let mut answers = Vec::new();
            for job in edits {
                answers.extend(self.one(job).await);
            }
            return answers;
        }
        // Each edit is submitted to the store when first polled, in queue order, and the store
        // commits what arrives together as one group. Publishing and answering wait until the
        // whole group is stored, and then go in queue order.
        let stored =
            futures_util::future::join_all(edits.into_iter().map(|job| self.store_edit(job))).await;
        stored
            .into_iter()
            .filter_map(|edit| edit.finish(self))
            .collect()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenRefreshes> {
        // Every update of the maps is a single insert or remove: consistent even after a panic.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a user edit's change.
    fn publish(&self, change: Change) {
        self.publish_as(change, false);
    }

    /// Publishes a change the PBX made (a status, call-center fields, the link).
    fn publish_pbx(&self, change: Change) {
        self.publish_as(change, true);
    }

    fn publish_as(&self, change: Change, pbx: bool) {
        if let Some(id) = change.record_id() {
            self.seen().superseded(id);
        }
        self.emit(change, pbx);
    }

    /// To the hub, or (cluster mode) to the job's pending changes.
    fn emit(&self, change: Change, pbx: bool) {
        if self.log.is_some() {
            self.pending().push((change, pbx));
        } else {
            self.hub.publish(change);
        }
    }

    /// Publishes the held `last_seen` refreshes whose interval is over.
    fn publish_held_refreshes(&self) {
        let due = self.seen().due(Instant::now());
        for record in due {
            self.emit(Change::StatusUpdated(record), true);
        }
    }

    /// The store half of a job, without publishing: [`Stored::finish`] does the rest. Status
    /// batches publish as they go, so they come back already answered.
    async fn store_edit(&self, job: Job) -> Stored {
        match job {
            Job::Create(new, reply) => {
                let r = self.bounded(reply.queued, self.store_create(new)).await;
                Stored::Created(reply, r)
            }
            Job::Update(id, patch, reply) => {
                let r = self
                    .bounded(reply.queued, self.store_update(&id, patch))
                    .await;
                Stored::Updated(reply, r)
            }
            Job::Delete(id, reply) => {
                let r = self.bounded(reply.queued, self.store_delete(&id)).await;
                Stored::Deleted(reply, r)
            }
            Job::Statuses(observations, reply) => {
                // A caller that gave up does not undo its write; nobody needs the answer then.
                let _ = reply.send(self.statuses(observations).await);
                Stored::Answered
            }
            Job::CallCenter(views, reply) => {
                let _ = reply.send(self.call_centers(views).await);
                Stored::Answered
            }
            Job::Load(reply) => {
                let _ = reply.send(self.load().await);
                Stored::Answered
            }
            Job::Link(link, reply) => {
                self.emit(Change::PbxLink(link), true);
                // Answered once appended: the lease task relies on the order (the link down
                // is in the log before it gives the lease up).
                Stored::Linked(reply)
            }
        }
    }

    /// Why the store must not be tried now, if it must not: the probe found it down.
    fn store_down(&self) -> Option<String> {
        let health = self.health.borrow();
        (!health.ok).then(|| {
            health
                .error
                .clone()
                .unwrap_or_else(|| "no answer".to_owned())
        })
    }

    /// Runs a user edit's store operation, queued at `queued`, within the store timeout: not
    /// at all while the store is down or when the edit already waited the whole timeout (then
    /// it was not applied), and abandoned with [`OutcomeUnknown`] when it runs too long.
    async fn bounded<T>(
        &self,
        queued: Instant,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if let Some(why) = self.store_down() {
            return Err(unavailable(format!(
                "the store did not answer its last health check ({why}); the edit was not applied"
            )));
        }
        let waited = queued.elapsed();
        if waited >= self.timeout {
            return Err(unavailable(format!(
                "the edit waited {} ms behind other writes and was not applied",
                waited.as_millis()
            )));
        }
        match tokio::time::timeout(self.timeout + TIMEOUT_MARGIN, op).await {
            Ok(r) => r,
            Err(_) => {
                let e = StoreError::Unavailable {
                    cause: Arc::new(OutcomeUnknown(format!(
                        "the store did not answer within {} ms",
                        (self.timeout + TIMEOUT_MARGIN).as_millis()
                    ))),
                };
                self.metrics.store_error(&e);
                Err(e)
            }
        }
    }

    async fn store_create(&self, new: NewExtension) -> Result<Extension, StoreError> {
        self.store
            .create(new)
            .await
            .inspect_err(|e| self.metrics.store_error(e))
    }

    /// The record after the edit, and whether the edit changed anything, as the store says.
    async fn store_update(
        &self,
        id: &RecordId,
        patch: ExtensionPatch,
    ) -> Result<UpdateOutcome, StoreError> {
        self.store
            .update(id, patch)
            .await
            .inspect_err(|e| self.metrics.store_error(e))
    }

    async fn store_delete(&self, id: &RecordId) -> Result<Extension, StoreError> {
        self.store
            .delete(id)
            .await
            .inspect_err(|e| self.metrics.store_error(e))
    }

    /// Publishes the stored records the hub does not have, as created; in the writer's lane, so
    /// no status change written meanwhile is overtaken by an older copy.
    async fn load(&self) -> Result<usize, StoreError> {
        let limit = self.timeout + TIMEOUT_MARGIN;
        let records =
            tokio::time::timeout(limit, self.store.list(&domain::ExtensionFilter::default()))
                .await
                .map_err(|_| {
                    unavailable(format!(
                        "the store did not answer within {} ms",
                        limit.as_millis()
                    ))
                })??;
        let known: std::collections::HashSet<String> = self
            .hub
            .snapshot(None)
            .extensions
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        let mut loaded = 0;
        for record in records
            .into_iter()
            .filter(|r| !known.contains(&r.id.to_string()))
        {
            self.publish(Change::Created(record));
            loaded += 1;
        }
        Ok(loaded)
    }

    /// The publishing half of a creation.
    fn created(&self, stored: Result<Extension, StoreError>) -> Result<Extension, StoreError> {
        let record = stored?;
        self.metrics.change(WriteCause::Create);
        self.publish(Change::Created(record.clone()));
        tracing::info!(extension = %record.extension, id = %record.id, "extension created");
        Ok(record)
    }

    /// The publishing half of an update: an edit that set the values already stored changed
    /// nothing and is not news.
    fn updated(&self, stored: Result<UpdateOutcome, StoreError>) -> Result<Extension, StoreError> {
        let UpdateOutcome { record, changed } = stored?;
        if changed {
            self.metrics.change(WriteCause::Update);
            self.publish(Change::Updated(record.clone()));
            tracing::info!(extension = %record.extension, id = %record.id, "extension updated");
        }
        Ok(record)
    }

    /// The publishing half of a deletion.
    fn deleted(&self, stored: Result<Extension, StoreError>) -> Result<Extension, StoreError> {
        let record = stored?;
        self.metrics.change(WriteCause::Delete);
        self.publish(Change::Deleted {
            id: record.id.clone(),
            department: record.department.clone(),
        });
        tracing::info!(extension = %record.extension, id = %record.id, "extension deleted");
        Ok(record)
    }

    async fn statuses(
        &self,
        observations: Vec<(ExtensionNumber, Observation, WriteCause)>,
    ) -> Vec<Result<StatusEffect, StoreError>> {
        let batch: Vec<(ExtensionNumber, Observation)> = observations
            .iter()
            .map(|(e, o, _)| (e.clone(), *o))
            .collect();
        // An instance that does not hold the AMI lease (any more) writes no status.
        if let Some(why) = self.not_holder() {
            return (0..batch.len())
                .map(|_| Err(unavailable(why.clone())))
                .collect();
        }
        // While the store is down, a batch fails at once instead of waiting for the timeout;
        // the pipeline resyncs as soon as the probe finds the store back.
        let results = match self.store_down() {
            Some(why) => {
                let why = format!("the store did not answer its last health check ({why})");
                return (0..batch.len())
                    .map(|_| Err(unavailable(why.clone())))
                    .collect();
            }
            None => {
                let limit = self.timeout + TIMEOUT_MARGIN;
                match tokio::time::timeout(limit, self.store.apply_statuses(&batch)).await {
                    Ok(results) => results,
                    Err(_) => {
                        let why =
                            format!("the store did not answer within {} ms", limit.as_millis());
                        (0..batch.len())
                            .map(|_| Err(unavailable(why.clone())))
                            .collect()
                    }
                }
            }
        };
        observations
            .into_iter()
            .zip(results)
            .map(|((_, _, cause), result)| self.status_result(cause, result))
            .collect()
    }

    async fn call_centers(
        &self,
        views: Vec<(ExtensionNumber, CallCenterView)>,
    ) -> Vec<Result<bool, StoreError>> {
        if let Some(why) = self.not_holder() {
            return (0..views.len())
                .map(|_| Err(unavailable(why.clone())))
                .collect();
        }
        let results = self.store.set_call_centers(&views).await;
        results
            .into_iter()
            .map(|result| {
                let UpdateOutcome { record, changed } =
                    result.inspect_err(|e| self.metrics.store_error(e))?;
                if changed {
                    self.metrics.change(WriteCause::CallCenter);
                    tracing::debug!(extension = %record.extension, "call-center state changed");
                    self.publish_pbx(Change::StatusUpdated(record));
                }
                Ok(changed)
            })
            .collect()
    }

    /// The publishing half of one observation; hands the store's answer on.
    fn status_result(
        &self,
        cause: WriteCause,
        result: Result<StatusOutcome, StoreError>,
    ) -> Result<StatusEffect, StoreError> {
        let StatusOutcome { effect, record } = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                self.metrics.store_error(&e);
                return Err(e);
            }
        };
        match effect {
            StatusEffect::Changed { .. } => {
                self.metrics.change(cause);
                tracing::debug!(extension = %record.extension, code = record.status_code, "status changed");
                self.publish_pbx(Change::StatusUpdated(record));
            }
            StatusEffect::SeenOnly => {
                // The status stands, but the record's `last_seen` moved: boards show it ("seen
                // 4 s ago"), so the hub's copy and its subscribers follow the store, at most
                // once per extension per interval. The store counts the coalesced write itself.
                if self.seen().admit(&record, Instant::now()) {
                    self.emit(Change::StatusUpdated(record), true);
                }
            }
            StatusEffect::Ignored(_) => {}
        }
        Ok(effect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{AgentName, Department, ExtensionFilter};
    use hub::{HubConfig, PbxLink};

    fn health(ok: bool) -> StoreHealth {
        StoreHealth {
            ok,
            checked: Some(Instant::now()),
            checked_at: Some(domain::now()),
            latency: Duration::ZERO,
            error: (!ok).then(|| "ping refused".to_owned()),
        }
    }

    #[tokio::test]
    async fn while_the_probe_says_down_edits_are_refused_untried_and_statuses_fail_at_once()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = store::open(
            &store::Backend::Embedded {
                data_dir: dir.path().to_path_buf(),
            },
            store::StoreOptions::default(),
        )
        .await?;
        let hub = Hub::new(HubConfig::default(), Vec::new(), PbxLink::unknown());
        let (probe, health_rx) = watch::channel(health(false));
        let (writer, _task) = Writer::spawn(
            store.clone(),
            hub,
            Arc::new(Metrics::default()),
            Duration::from_secs(1),
            health_rx,
            Duration::from_millis(1500),
            None,
        );
        let new = NewExtension {
            extension: ExtensionNumber::parse("1001")?,
            agent_name: AgentName::parse("Alice")?,
            department: Department::parse("Sales")?,
            is_active: true,
        };
        let refused = writer
            .create(new.clone())
            .await
            .expect_err("refused while the store is down");
        assert_eq!(refused.code(), "unavailable");
        assert!(
            store.list(&ExtensionFilter::default()).await?.is_empty(),
            "a refused edit was not tried"
        );
        let obs = Observation::reported(1, domain::now());
        let results = writer
            .apply_statuses(vec![(new.extension.clone(), obs, WriteCause::Event)])
            .await;
        assert!(
            matches!(&results[..], [Err(e)] if e.is_transient()),
            "{results:?}"
        );
        // Once the probe finds the store again, the same edit goes through.
        probe.send_replace(health(true));
        let created = writer.create(new).await.expect("the store answers");
        assert_eq!(created.extension.as_str(), "1001");
        Ok(())
    }
}
