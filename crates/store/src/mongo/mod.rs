//! The MongoDB backend, on the official driver: collections `extensions` and
//! `extension_status_history`, indexes created at start, a status change as one conditional
//! update, and `last_seen` batches as one `update` command.
//!
//! The documents it sends are built in [`docs`], where tests check them exactly.

mod cluster;
pub(crate) mod docs;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bson::{Bson, Document, doc};
use domain::callcenter::CallCenterView;
use domain::{
    Extension, ExtensionFilter, ExtensionNumber, ExtensionPatch, HistoryEntry, HistoryEvent,
    NewExtension, NoWrite, Observation, RecordId, TimeRange, Timestamp, decide,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use tokio_util::sync::DropGuard;

use crate::batcher::{self, LastSeenBatcher, LastSeenSink};
use crate::counters::{Counters, WriteCounters};
use crate::error::{Message, OutcomeUnknown, StoreError, cause};
use crate::{
    HistoryWindow, Repository, StatusEffect, StatusOutcome, StoreOptions, UpdateOutcome,
    sort_records,
};

/// MongoDB's code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;
/// How often a status change is retried when another writer changed the same extension between
/// our conditional update and our re-read.
const STATUS_ATTEMPTS: usize = 3;
/// How many extensions `apply_statuses` works on at once.
const CONCURRENT_EXTENSIONS: usize = 32;

/// Where the MongoDB backend connects.
#[derive(Clone)]
pub struct MongoConfig {
    /// The connection string, e.g. `mongodb://localhost:27017`. It may hold credentials, so it
    /// is never logged or shown in errors.
    pub uri: String,
    /// The database name (`call_center` by default in the binaries).
    pub database: String,
    /// How long to look for a usable server before an operation fails as unavailable.
    pub server_selection_timeout: Duration,
    /// The application name shown in the server's logs.
    pub app_name: Option<String>,
    /// Whether [`MongoStore::connect`] may return while the server does not answer: the store
    /// then creates its indexes in the background as soon as the server answers, and
    /// [`Repository::ping`] fails until they exist. Off by default (connect fails instead).
    pub start_unreachable: bool,
}

impl MongoConfig {
    /// A config with a 5-second server selection timeout.
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            database: database.into(),
            server_selection_timeout: Duration::from_secs(5),
            app_name: Some("extstatus".into()),
            start_unreachable: false,
        }
    }
}

impl std::fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoConfig")
            .field("uri", &redact_uri(&self.uri))
            .field("database", &self.database)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("app_name", &self.app_name)
            .field("start_unreachable", &self.start_unreachable)
            .finish()
    }
}

/// The URI with any password replaced, for logs. Everything up to the last `@` counts as the
/// credentials, so a password with an unescaped `/`, `?` or `@` (which the driver refuses, and
/// an error then shows) is hidden too; an `@` in the options hides a little more than needed.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return "<unparsable uri>".into();
    };
    match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split([':', '/', '?']).next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => uri.to_owned(),
    }
}

/// Checks a connection string without connecting (no DNS lookup either) and says what is
/// wrong, never quoting its password: the driver's own message can quote a piece of a
/// malformed one, so a URI with credentials is described by its redacted form.
pub fn check_uri(uri: &str) -> Result<(), String> {
    match mongodb::options::ConnectionString::parse(uri) {
        Ok(_) => Ok(()),
        Err(e) => Err(uri_problem(uri, &e.kind)),
    }
}

/// What is wrong with `uri`, which the driver refused with `kind`, without its password.
fn uri_problem(uri: &str, kind: &ErrorKind) -> String {
    let redacted = redact_uri(uri);
    if redacted == uri {
        return format!("MongoDB URI {uri}: {kind}");
    }
    match mongodb::options::ConnectionString::parse(&redacted) {
        Err(e) => format!("MongoDB URI {redacted}: {}", e.kind),
        Ok(_) => format!(
            "MongoDB URI {redacted}: the user name or password is not valid in a URI \
             (characters such as @ : / ? # [ ] and % must be percent-encoded)"
        ),
    }
}

/// The longest database name MongoDB takes, in bytes.
const MAX_DATABASE_NAME_BYTES: usize = 63;

/// Checks a database name against MongoDB's rules (not empty, at most 63 bytes, none of
/// `/ \ . " $`, a space or a control character), which the server would otherwise only enforce
/// at the first command.
pub fn check_database_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the database name must not be empty".to_owned());
    }
    if name.len() > MAX_DATABASE_NAME_BYTES {
        return Err(format!(
            "the database name is {} bytes long; MongoDB takes at most {MAX_DATABASE_NAME_BYTES}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '.' | '"' | '$' | ' ') || c.is_control())
    {
        return Err(format!(
            "{name:?} is not a valid database name: MongoDB refuses {c:?} in one (no / \\ . \" $, \
             space or control character)"
        ));
    }
    Ok(())
}

/// The MongoDB store. Cloning is cheap and shares the client.
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    extensions: Collection<Document>,
    history: Collection<Document>,
    batcher: LastSeenBatcher,
    counters: Arc<Counters>,
    /// Whether the indexes exist (created at connect, or later in the background when the
    /// server did not answer then).
    indexes_ready: AtomicBool,
    _stop_flusher: DropGuard,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.inner.db.name())
            .finish_non_exhaustive()
    }
}

/// Maps a driver error: an unreachable server is transient, anything else is internal.
/// Duplicate keys are handled by the callers that can name the extension.
///
/// A server that could not be selected (or resolved), or a client shut down, was never sent the operation; a
/// connection that failed afterwards (I/O, a cleared pool, a retryable-write label: the
/// driver's one retry failed too) may have carried it, so its cause is [`OutcomeUnknown`].
fn map_err(e: mongodb::error::Error) -> StoreError {
    let never_sent = matches!(
        *e.kind,
        ErrorKind::ServerSelection { .. } | ErrorKind::DnsResolve { .. } | ErrorKind::Shutdown
    );
    let transient = never_sent
        || matches!(
            *e.kind,
            ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
        )
        || e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || e.contains_label("TransientTransactionError");
    // The driver's own Display adds labels and empty fields around the kind; the kind says
    // what happened (and, for server selection, which servers were tried and why).
    let text = e.kind.to_string();
    if !transient {
        StoreError::Internal {
            cause: cause(Message(text)),
        }
    } else if never_sent {
        StoreError::Unavailable {
            cause: cause(Message(text)),
        }
    } else {
        StoreError::Unavailable {
            cause: cause(OutcomeUnknown(text)),
        }
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// Checks an `update` command's reply for per-statement errors, which the server reports with
/// `ok: 1`, and returns how many documents it modified (`nModified`: a `$max` that keeps a
/// newer `last_seen`, or an extension that does not exist, modifies nothing).
fn check_write_reply(reply: &Document) -> Result<u64, StoreError> {
    if let Ok(errors) = reply.get_array("writeErrors")
        && let Some(first) = errors.first()
    {
        let msg = first
            .as_document()
            .and_then(|d| d.get_str("errmsg").ok())
            .unwrap_or("unknown write error");
        return Err(StoreError::internal(format!(
            "last_seen batch: {} statement(s) failed, first: {msg}",
            errors.len()
        )));
    }
    if let Ok(wce) = reply.get_document("writeConcernError") {
        let msg = wce
            .get_str("errmsg")
            .unwrap_or("write concern not satisfied");
        return Err(StoreError::unavailable(format!("last_seen batch: {msg}")));
    }
    let modified = match reply.get("nModified") {
        Some(bson::Bson::Int32(n)) => i64::from(*n),
        Some(bson::Bson::Int64(n)) => *n,
        other => {
            return Err(StoreError::internal(format!(
                "last_seen batch: the reply has no count of modified documents (nModified: {other:?})"
            )));
        }
    };
    Ok(u64::try_from(modified).unwrap_or(0))
}

/// The records `filter` matches, in the server's order. Documents can be written by other
/// tools: one that is not a valid record is left out and logged, so that it cannot take the
/// whole list (and the dashboard) down with it; reading it by id still reports it.
async fn find_records(
    extensions: &Collection<Document>,
    filter: Document,
) -> Result<Vec<Extension>, StoreError> {
    let found: Vec<Document> = extensions
        .find(filter)
        .await
        .map_err(map_err)?
        .try_collect()
        .await
        .map_err(map_err)?;
    Ok(found
        .iter()
        .filter_map(|d| {
            docs::read_record(d)
                .map_err(|e| tracing::error!(error = %e, "extension document skipped"))
                .ok()
        })
        .collect())
}

/// Checks the configuration and makes a client for its database. Nothing is sent to the
/// server yet.
async fn database(config: &MongoConfig) -> Result<Database, StoreError> {
    check_uri(&config.uri).map_err(|detail| StoreError::InvalidConfig { detail })?;
    check_database_name(&config.database).map_err(|detail| StoreError::InvalidConfig {
        detail: format!("MongoDB database: {detail}"),
    })?;
    // The URI's syntax is sound, so what fails now (an SRV lookup) quotes no password.
    let mut client_options =
        ClientOptions::parse(&config.uri)
            .await
            .map_err(|e| StoreError::InvalidConfig {
                detail: format!("MongoDB URI {}: {}", redact_uri(&config.uri), e.kind),
            })?;
    // Options written in the URI are the operator's explicit choice; ours only fill gaps.
    client_options
        .server_selection_timeout
        .get_or_insert(config.server_selection_timeout);
    if client_options.app_name.is_none() {
        client_options.app_name.clone_from(&config.app_name);
    }
    let client = Client::with_options(client_options).map_err(|e| StoreError::InvalidConfig {
        detail: format!("MongoDB options: {}", e.kind),
    })?;
    let db = client.database(&config.database);
    Ok(db)
}

impl MongoStore {
    /// Connects, creates the indexes, and starts the `last_seen` batcher. A server that cannot
    /// be reached within the selection timeout is [`StoreError::Unavailable`] with the cause,
    /// unless [`MongoConfig::start_unreachable`] is set: then the store is returned at once and
    /// creates the indexes as soon as the server answers (trying again every second).
    /// A malformed URI is [`StoreError::InvalidConfig`]. Must run inside a tokio runtime.
    pub async fn connect(config: &MongoConfig, options: StoreOptions) -> Result<Self, StoreError> {
        let db = database(config).await?;
        let indexes_ready = match ensure_indexes(&db, options.history_retention).await {
            Ok(()) => true,
            Err(e) if config.start_unreachable && e.is_transient() => {
                tracing::warn!(
                    error = %e,
                    uri = %redact_uri(&config.uri),
                    "MongoDB does not answer; serving without it, the indexes are created as \
                     soon as it answers"
                );
                false
            }
            Err(e) => return Err(e),
        };
        let counters = Arc::new(Counters::default());
        let stop = options.shutdown.child_token();
        let inner = Arc::new(Inner {
            extensions: db.collection(docs::EXTENSIONS),
            history: db.collection(docs::HISTORY),
            db,
            batcher: LastSeenBatcher::new(counters.clone()),
            counters,
            indexes_ready: AtomicBool::new(indexes_ready),
            _stop_flusher: stop.clone().drop_guard(),
        });
        if !indexes_ready {
            tokio::spawn(create_indexes_later(
                Arc::downgrade(&inner),
                options.history_retention,
                stop.clone(),
            ));
        }
        batcher::spawn_flusher(Arc::downgrade(&inner), options.last_seen_interval, stop);
        if indexes_ready {
            tracing::info!(database = %config.database, uri = %redact_uri(&config.uri), "MongoDB store ready");
        }
        Ok(Self { inner })
    }

    /// Every record of the configured database, in [`ExtensionNumber`]'s order, read with
    /// `find` only (for `seeder --dry-run`): no collection or index is created, and nothing is
    /// written. A document that is not a valid record is left out, as [`Repository::list`]
    /// does. An unreachable server is [`StoreError::Unavailable`].
    pub async fn read_records(config: &MongoConfig) -> Result<Vec<Extension>, StoreError> {
        let db = database(config).await?;
        let mut records =
            find_records(&db.collection::<Document>(docs::EXTENSIONS), doc! {}).await?;
        sort_records(&mut records);
        Ok(records)
    }

    /// Drops both collections: for tests that use a throw-away database.
    pub async fn drop_collections(&self) -> Result<(), StoreError> {
        self.inner.extensions.drop().await.map_err(map_err)?;
        self.inner.history.drop().await.map_err(map_err)
    }
}

/// How often a store that started without its server tries to create the indexes again.
const INDEX_RETRY: Duration = Duration::from_secs(1);

/// Creates the indexes once the server answers, for a store that started without it; ends when
/// they exist, when the store is dropped, or at shutdown.
async fn create_indexes_later(
    inner: std::sync::Weak<Inner>,
    history_retention: Option<std::time::Duration>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(INDEX_RETRY) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        match ensure_indexes(&inner.db, history_retention).await {
            Ok(()) => {
                inner.indexes_ready.store(true, Ordering::Release);
                tracing::info!(database = %inner.db.name(), "MongoDB answers: indexes created, store ready");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "MongoDB still does not answer"),
        }
    }
}

/// Creates the indexes, one `createIndexes` command per collection. One command matters: a
/// server may build an index added to an existing collection in a background job (DocumentDB
/// polls for such builds every two seconds), while the indexes of the command that creates the
/// collection are built at once.
async fn ensure_indexes(
    db: &Database,
    history_retention: Option<std::time::Duration>,
) -> Result<(), StoreError> {
    let mut by_collection: Vec<(&'static str, Vec<IndexModel>)> = Vec::new();
    let mut ttl = None;
    for spec in docs::indexes(history_retention) {
        if let Some(after) = spec.expire_after {
            ttl = Some((spec.collection, spec.keys.clone(), after));
        }
        let options = IndexOptions::builder()
            .unique(spec.unique.then_some(true))
            .expire_after(spec.expire_after)
            .build();
        let model = IndexModel::builder()
            .keys(spec.keys)
            .options(options)
            .build();
        match by_collection
            .iter_mut()
            .find(|(c, _)| *c == spec.collection)
        {
            Some((_, models)) => models.push(model),
            None => by_collection.push((spec.collection, vec![model])),
        }
    }
    for (collection, models) in by_collection {
        let created = db
            .collection::<Document>(collection)
            .create_indexes(models)
            .await;
        match (created, &ttl) {
            (Ok(_), _) => {}
            // The index exists with another expiry (the retention changed, or it was created
            // before there was one). `collMod` cannot turn a plain index into a TTL one, and
            // DocumentDB does not take `keyPattern` there, so the index is dropped by its
            // default name and created again with the new expiry.
            (Err(e), Some((ttl_collection, keys, after)))
                if *ttl_collection == collection && is_index_options_conflict(&e) =>
            {
                let name = keys
                    .iter()
                    .map(|(k, v)| format!("{k}_{v}"))
                    .collect::<Vec<_>>()
                    .join("_");
                let coll = db.collection::<Document>(collection);
                coll.drop_index(name).await.map_err(map_err)?;
                let model = IndexModel::builder()
                    .keys(keys.clone())
                    .options(IndexOptions::builder().expire_after(Some(*after)).build())
                    .build();
                coll.create_index(model).await.map_err(map_err)?;
            }
            // No expiry asked for (a tool such as the seeder, which does not prune): an index
            // on the same keys that a server gave an expiry serves the same queries; keep it.
            (Err(e), None) if is_index_options_conflict(&e) => {}
            (Err(e), _) => return Err(map_err(e)),
        }
    }
    Ok(())
}

/// Whether creating an index failed because one with the same keys and other options exists
/// (IndexOptionsConflict 85, IndexKeySpecsConflict 86).
fn is_index_options_conflict(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Command(c) if c.code == 85 || c.code == 86)
}

impl Inner {
    async fn find_record(&self, filter: Document) -> Result<Option<Extension>, StoreError> {
        let found = self.extensions.find_one(filter).await.map_err(map_err)?;
        found.as_ref().map(docs::read_record).transpose().map(|r| {
            r.map(|mut r| {
                self.batcher.overlay(&mut r);
                r
            })
        })
    }

    async fn apply_status(
        &self,
        ext: &ExtensionNumber,
        obs: Observation,
    ) -> Result<StatusOutcome, StoreError> {
        // A refresh that is still pending counts as stored: an observation older than it is
        // stale even though the database does not show it yet.
        let pending_newer = self.batcher.pending(ext).is_some_and(|p| obs.at < p);
        for _ in 0..STATUS_ATTEMPTS {
            if !pending_newer {
                let before = self
                    .extensions
                    .find_one_and_update(docs::status_filter(ext, &obs), docs::status_update(&obs))
                    .return_document(ReturnDocument::Before)
                    .await
                    .map_err(map_err)?;
                if let Some(before) = before {
                    return self.changed(ext, obs, &docs::read_record(&before)?).await;
                }
            }
            // Nothing matched: unknown extension, same code, or stale. Read and let the
            // domain decide which.
            let current = self
                .find_record(docs::by_extension(ext))
                .await?
                .ok_or(StoreError::NotFound)?;
            match decide(&current.status_view(), &obs) {
                Err(no_write) => {
                    return Ok(StatusOutcome {
                        effect: StatusEffect::Ignored(no_write),
                        record: current,
                    });
                }
                Ok(write) if write.change.is_none() => {
                    let mut record = current;
                    if let Some(seen) = write.last_seen {
                        self.batcher.touch(ext, seen);
                        record.last_seen = record.last_seen.max(Some(seen));
                    }
                    return Ok(StatusOutcome {
                        effect: StatusEffect::SeenOnly,
                        record,
                    });
                }
                // Another writer changed the code between our update and our read: try again.
                Ok(_) if !pending_newer => {}
                Ok(_) => {
                    return Ok(StatusOutcome {
                        effect: StatusEffect::Ignored(NoWrite::Stale),
                        record: current,
                    });
                }
            }
        }
        Err(StoreError::unavailable(format!(
            "extension {ext} kept changing under concurrent writers"
        )))
    }

    /// Finishes a status change the conditional update applied: the history entry, the
    /// counters, and the record as it now stands.
    async fn changed(
        &self,
        ext: &ExtensionNumber,
        obs: Observation,
        before: &Extension,
    ) -> Result<StatusOutcome, StoreError> {
        let mut record = before.clone();
        // The filter guarantees a change that is not stale, so the domain agrees.
        let write = decide(&before.status_view(), &obs).map_err(|no| {
            StoreError::internal(format!(
                "conditional update matched but the change function says {no:?}"
            ))
        })?;
        record.apply_status(&write);
        self.counters.status_changes(1);
        if let Some(seen) = write.last_seen {
            self.batcher.settle(ext, seen);
        }
        if let Some(change) = write.change {
            let entry = HistoryEntry::new(
                change.at,
                HistoryEvent::Status {
                    extension: ext.clone(),
                    previous_code: change.previous_code,
                    code: change.status_code,
                },
            );
            // The record already changed; a lost history entry must not hide that from the
            // caller, who has to broadcast it.
            let written = match docs::history_entry(&entry) {
                Ok(d) => self.history.insert_one(d).await.map(drop).map_err(map_err),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::error!(extension = %ext, error = %e, "status history entry not written");
            }
        }
        self.batcher.overlay(&mut record);
        Ok(StatusOutcome {
            effect: StatusEffect::Changed {
                previous_code: before.status_code,
            },
            record,
        })
    }
}

#[async_trait]
impl LastSeenSink for Inner {
    fn batcher(&self) -> &LastSeenBatcher {
        &self.batcher
    }

    async fn write_last_seen(
        &self,
        batch: &[(ExtensionNumber, Timestamp)],
    ) -> Result<u64, StoreError> {
        let mut modified = 0;
        for command in docs::last_seen_commands(batch) {
            let reply = self.db.run_command(command).await.map_err(map_err)?;
            modified += check_write_reply(&reply)?;
        }
        Ok(modified)
    }
}

#[async_trait]
impl Repository for MongoStore {
    fn backend_name(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if !self.inner.indexes_ready.load(Ordering::Acquire) {
            return Err(StoreError::unavailable(
                "MongoDB has not answered since start-up (the indexes are not created yet)",
            ));
        }
        self.inner
            .db
            .run_command(bson::doc! { "ping": 1 })
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn list(&self, filter: &ExtensionFilter) -> Result<Vec<Extension>, StoreError> {
        let mut records = find_records(&self.inner.extensions, docs::list_filter(filter)).await?;
        self.inner.batcher.overlay_all(&mut records);
        sort_records(&mut records);
        Ok(records)
    }

    async fn get(&self, id: &RecordId) -> Result<Option<Extension>, StoreError> {
        self.inner.find_record(docs::by_id(id)).await
    }

    async fn get_by_extension(
        &self,
        extension: &ExtensionNumber,
    ) -> Result<Option<Extension>, StoreError> {
        self.inner.find_record(docs::by_extension(extension)).await
    }

    async fn create(&self, new: NewExtension) -> Result<Extension, StoreError> {
        let id = RecordId::from_bytes(bson::oid::ObjectId::new().bytes());
        let record = Extension::create(id, new, domain::now());
        match self
            .inner
            .extensions
            .insert_one(docs::record(&record))
            .await
        {
            Ok(_) => {
                self.inner.counters.user_edits(1);
                Ok(record)
            }
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Conflict {
                extension: record.extension,
            }),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn update(
        &self,
        id: &RecordId,
        patch: ExtensionPatch,
    ) -> Result<UpdateOutcome, StoreError> {
        if !patch.is_empty() {
            let updated = self
                .inner
                .extensions
                .find_one_and_update(
                    docs::patch_filter(id, &patch),
                    docs::patch_update(&patch, domain::now()),
                )
                .return_document(ReturnDocument::After)
                .await
                .map_err(map_err)?;
            if let Some(doc) = updated {
                self.inner.counters.user_edits(1);
                let mut record = docs::read_record(&doc)?;
                self.inner.batcher.overlay(&mut record);
                return Ok(UpdateOutcome {
                    record,
                    changed: true,
                });
            }
        }
        // Nothing to change, or nothing would change: the record as it is, if it exists.
        let record = self.get(id).await?.ok_or(StoreError::NotFound)?;
        Ok(UpdateOutcome {
            record,
            changed: false,
        })
    }

    async fn delete(&self, id: &RecordId) -> Result<Extension, StoreError> {
        let deleted = self
            .inner
            .extensions
            .find_one_and_delete(docs::by_id(id))
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        self.inner.counters.user_edits(1);
        let mut record = docs::read_record(&deleted)?;
        self.inner.batcher.overlay(&mut record);
        self.inner.batcher.forget(&record.extension);
        Ok(record)
    }

    async fn apply_status(
        &self,
        extension: &ExtensionNumber,
        observation: Observation,
    ) -> Result<StatusOutcome, StoreError> {
        self.inner.apply_status(extension, observation).await
    }

    /// Observations of one extension are applied in order; different extensions go to the
    /// server concurrently (a full state list would otherwise cost one round trip after
    /// another).
    async fn apply_statuses(
        &self,
        observations: &[(ExtensionNumber, Observation)],
    ) -> Vec<Result<StatusOutcome, StoreError>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<&ExtensionNumber, usize> = HashMap::new();
        for (i, (ext, _)) in observations.iter().enumerate() {
            let g = *group_of.entry(ext).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        let done: Vec<Vec<(usize, Result<StatusOutcome, StoreError>)>> =
            futures_util::stream::iter(groups)
                .map(|indexes| async move {
                    let mut out = Vec::with_capacity(indexes.len());
                    for i in indexes {
                        let (ext, obs) = &observations[i];
                        out.push((i, self.inner.apply_status(ext, *obs).await));
                    }
                    out
                })
                .buffer_unordered(CONCURRENT_EXTENSIONS)
                .collect()
                .await;
        let mut results: Vec<Option<Result<StatusOutcome, StoreError>>> =
            observations.iter().map(|_| None).collect();
        for (i, result) in done.into_iter().flatten() {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::internal("observation not applied"))))
            .collect()
    }

    /// One conditional `$set`: it matches only while a field differs, so an unchanged view
    /// writes nothing; then the record is read only to answer.
    async fn set_call_center(
        &self,
        extension: &ExtensionNumber,
        view: &CallCenterView,
    ) -> Result<UpdateOutcome, StoreError> {
        let before = self
            .inner
            .extensions
            .find_one_and_update(
                docs::call_center_filter(extension, view),
                docs::call_center_update(view),
            )
            .return_document(ReturnDocument::Before)
            .await
            .map_err(map_err)?;
        if let Some(doc) = before {
            self.inner.counters.call_center_changes(1);
            let mut record = docs::read_record(&doc)?;
            let old = CallCenterView::of(&record);
            view.apply_to(&mut record);
            // Pause, presence and call changes are history. The record already changed; a lost
            // entry is logged and must not hide the change from the caller.
            let entries =
                domain::history::call_center_changes(extension, &old, view, domain::now());
            if let Err(e) = self.append_history(&entries).await {
                tracing::error!(extension = %extension, error = %e, "call-center history entries not written");
            }
            self.inner.batcher.overlay(&mut record);
            return Ok(UpdateOutcome {
                record,
                changed: true,
            });
        }
        let record = self
            .get_by_extension(extension)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(UpdateOutcome {
            record,
            changed: false,
        })
    }

    async fn touch_last_seen(
        &self,
        extensions: &[ExtensionNumber],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        // Unknown extensions cost one entry until the next batch, whose update matches nothing.
        self.inner
            .batcher
            .touch_many(extensions, domain::record::truncate(at));
        Ok(())
    }

    async fn history(
        &self,
        extension: Option<&ExtensionNumber>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_limited(extension, from, to, usize::MAX).await
    }

    async fn history_limited(
        &self,
        extension: Option<&ExtensionNumber>,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        if from > to || limit == 0 {
            return Ok(Vec::new());
        }
        let mut find = self
            .inner
            .history
            .find(docs::history_filter(extension, from, to))
            .sort(docs::history_sort());
        if limit != usize::MAX {
            find = find.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let found: Vec<Document> = find
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        found.iter().map(docs::read_history_entry).collect()
    }

    async fn append_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let documents = entries
            .iter()
            .map(docs::history_entry)
            .collect::<Result<Vec<_>, _>>()?;
        self.inner
            .history
            .insert_many(documents)
            .ordered(true)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn history_window(&self, range: TimeRange) -> Result<HistoryWindow, StoreError> {
        let prior: Vec<Document> = self
            .inner
            .history
            .aggregate(docs::history_prior_pipeline(range.from()))
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let prior = prior
            .iter()
            .map(docs::read_history_entry)
            .collect::<Result<Vec<_>, _>>()?;
        let mut entries = Vec::new();
        let mut cursor = self
            .inner
            .history
            .find(doc! { "at": { "$gte": docs::date(range.from()) } })
            .sort(docs::history_sort())
            .await
            .map_err(map_err)?;
        while let Some(d) = cursor.try_next().await.map_err(map_err)? {
            let entry = docs::read_history_entry(&d)?;
            let past = entry.at >= range.to();
            entries.push(entry);
            if past {
                break;
            }
        }
        Ok(HistoryWindow { prior, entries })
    }

    async fn prune_history(&self, before: Timestamp, batch: usize) -> Result<u64, StoreError> {
        let ids: Vec<Document> = self
            .inner
            .history
            .find(docs::history_before(before))
            .sort(docs::history_sort())
            .projection(doc! { "_id": 1 })
            .limit(i64::try_from(batch.max(1)).unwrap_or(i64::MAX))
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let ids: Vec<Bson> = ids.iter().filter_map(|d| d.get("_id").cloned()).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .inner
            .history
            .delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map_err(map_err)?;
        Ok(deleted.deleted_count)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        batcher::flush(&*self.inner).await
    }

    fn counters(&self) -> WriteCounters {
        self.inner.counters.snapshot()
    }

    fn cluster(
        &self,
        options: crate::cluster::ClusterOptions,
    ) -> Option<Arc<dyn crate::cluster::Cluster>> {
        Some(Arc::new(cluster::MongoCluster::new(
            &self.inner.db,
            options,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection that failed after the operation was sent may have carried it; a server
    /// that was never selected, or a client shut down, did not; anything else is internal.
    #[test]
    fn driver_errors_say_whether_the_write_may_have_been_applied() {
        let io = map_err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
        assert!(io.is_transient() && io.outcome_unknown(), "{io:?}");
        assert!(io.to_string().contains("may have been applied"), "{io}");
        let shut = map_err(ErrorKind::Shutdown.into());
        assert!(shut.is_transient() && !shut.outcome_unknown(), "{shut:?}");
        let other = map_err(mongodb::error::Error::custom("bad"));
        assert!(
            !other.is_transient() && !other.outcome_unknown(),
            "{other:?}"
        );
    }

    #[test]
    fn uris_are_redacted() {
        let rows = [
            ("mongodb://localhost:27017", "mongodb://localhost:27017"),
            (
                "mongodb://app:s3cr%40t@db1:27017,db2/call_center?tls=true",
                "mongodb://app:***@db1:27017,db2/call_center?tls=true",
            ),
            (
                "mongodb+srv://app:pw@cluster.example.net/",
                "mongodb+srv://app:***@cluster.example.net/",
            ),
            ("not a uri", "<unparsable uri>"),
            // Unescaped characters in a password (which the driver refuses) are hidden too.
            (
                "mongodb://app:pa/ss@db:27017/",
                "mongodb://app:***@db:27017/",
            ),
            ("mongodb://app:pa?ss@db/", "mongodb://app:***@db/"),
            ("mongodb://app:p@ss@db/", "mongodb://app:***@db/"),
        ];
        for (uri, want) in rows {
            assert_eq!(redact_uri(uri), want);
        }
        let config = MongoConfig::new("mongodb://u:hunter2@h/", "call_center");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn malformed_uris_are_described_without_their_password() {
        assert_eq!(check_uri("mongodb://u:pw@db:27017/?tls=true"), Ok(()));
        for (uri, says) in [
            ("mongodb://u:pa/ssw0rd@db/", "user name or password"),
            ("mongodb://u:pa?ssw0rd@db/", "user name or password"),
            ("mongodb://u:pa%zzssw0rd@db/", "user name or password"),
            (
                "mongodb://u:ssw0rd@db/?serverSelectionTimeoutMS=x",
                "serverselectiontimeoutms",
            ),
            ("http://db/", "scheme"),
        ] {
            let problem = check_uri(uri).expect_err(uri);
            assert!(problem.contains(says), "{uri}: {problem}");
            assert!(!problem.contains("ssw0rd"), "{uri}: {problem}");
        }
    }

    #[test]
    fn database_names_follow_mongodb_rules() {
        assert_eq!(check_database_name("call_center"), Ok(()));
        assert_eq!(check_database_name(&"x".repeat(63)), Ok(()));
        for (name, says) in [
            ("", "must not be empty"),
            ("a.b", "'.'"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("a$b", "'$'"),
            ("a\u{0}b", "'\\0'"),
        ] {
            let problem = check_database_name(name).expect_err(name);
            assert!(problem.contains(says), "{name:?}: {problem}");
        }
        let long = check_database_name(&"x".repeat(64)).expect_err("64 bytes");
        assert!(long.contains("64 bytes"), "{long}");
    }

    #[test]
    fn write_replies() {
        // Matched is not written: `n` counts a `$max` that kept a newer value, `nModified` not.
        assert_eq!(
            check_write_reply(&bson::doc! { "n": 3, "nModified": 2, "ok": 1.0 }).expect("ok"),
            2
        );
        assert_eq!(
            check_write_reply(&bson::doc! { "n": 1, "nModified": 1_i64, "ok": 1.0 }).expect("ok"),
            1
        );
        let err = check_write_reply(&bson::doc! { "n": 3, "ok": 1.0 }).expect_err("no count");
        assert!(err.to_string().contains("nModified"), "{err}");
        let err = check_write_reply(&bson::doc! {
            "n": 0, "ok": 1.0,
            "writeErrors": [{ "index": 0, "code": 2, "errmsg": "bad" }],
        })
        .expect_err("write error");
        assert_eq!(
            err.to_string(),
            "store error: last_seen batch: 1 statement(s) failed, first: bad"
        );
        let err = check_write_reply(&bson::doc! {
            "n": 1, "ok": 1.0, "writeConcernError": { "code": 64, "errmsg": "waiting for replication timed out" },
        })
        .expect_err("write concern");
        assert!(err.is_transient());
    }
}
