//! [`Cluster`] on MongoDB: the lease in `cluster_leases`, the change log in
//! `extension_changes`, shared documents in `cluster_shared`, commands in `cluster_commands`.
//!
//! Every write uses write concern majority (journaled); the change log is read with read
//! concern majority, so an instance never hands out an entry that a failover could roll back.
//! The indexes are created before the first operation (a [`Cluster`] is made without a round
//! trip by [`crate::Repository::cluster`]).

use std::ops::RangeInclusive;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bson::{Bson, DateTime, Document, doc};
use domain::Timestamp;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use mongodb::error::ErrorKind;
use mongodb::options::{
    Acknowledgment, CollectionOptions, IndexOptions, ReadConcern, ReturnDocument, WriteConcern,
};
use mongodb::{Collection, Database, IndexModel};
use tokio::sync::OnceCell;

use super::{DUPLICATE_KEY, is_duplicate_key, is_index_options_conflict, map_err};
use crate::cluster::{Cluster, ClusterOptions, LeaseState, LoggedChange};
use crate::error::StoreError;

/// The lease documents.
pub const LEASES: &str = "cluster_leases";
/// The change log.
pub const CHANGES: &str = "extension_changes";
/// Small shared documents.
pub const SHARED: &str = "cluster_shared";
/// AMI commands for the lease holder.
pub const COMMANDS: &str = "cluster_commands";

/// How often one append tries again after other appenders took the numbers it tried.
const APPEND_ATTEMPTS: usize = 200;
/// How long a write waits for a majority of the replica set before it fails.
const MAJORITY_TIMEOUT: Duration = Duration::from_secs(10);

const PENDING: &str = "pending";
const TAKEN: &str = "taken";
const DONE: &str = "done";

/// The MongoDB [`Cluster`]. Made by [`super::MongoStore`]'s `Repository::cluster`.
pub(crate) struct MongoCluster {
    db: Database,
    options: ClusterOptions,
    leases: Collection<Document>,
    changes: Collection<Document>,
    shared: Collection<Document>,
    commands: Collection<Document>,
    /// Set once the indexes exist.
    ready: OnceCell<()>,
    /// The highest change number this process knows to be in the log, and when it learned it
    /// (see [`MongoCluster::known_last`]).
    last: Mutex<Option<(u64, Instant)>>,
}

impl std::fmt::Debug for MongoCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoCluster")
            .field("database", &self.db.name())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl MongoCluster {
    pub(crate) fn new(db: &Database, options: ClusterOptions) -> Self {
        let write_concern = WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .w_timeout(MAJORITY_TIMEOUT)
            .build();
        let collection = |name: &str| {
            db.collection_with_options::<Document>(
                name,
                CollectionOptions::builder()
                    .write_concern(write_concern.clone())
                    .read_concern(ReadConcern::majority())
                    .build(),
            )
        };
        Self {
            leases: collection(LEASES),
            changes: collection(CHANGES),
            shared: collection(SHARED),
            commands: collection(COMMANDS),
            db: db.clone(),
            options,
            ready: OnceCell::new(),
            last: Mutex::new(None),
        }
    }

    /// Creates the indexes on first use (again after a failure).
    async fn ready(&self) -> Result<(), StoreError> {
        self.ready
            .get_or_try_init(|| async {
                let retention = self.options.change_log_retention;
                // Only the entry that starts a log carries `first`; its unique index lets one
                // appender start an empty log (see `append_changes`).
                let first = IndexModel::builder()
                    .keys(doc! { "first": 1 })
                    .options(
                        IndexOptions::builder()
                            .unique(true)
                            .partial_filter_expression(doc! { "first": { "$exists": true } })
                            .build(),
                    )
                    .build();
                ensure_indexes(&self.changes, "at", retention, vec![first]).await?;
                let state = IndexModel::builder()
                    .keys(doc! { "state": 1, "created_at": 1 })
                    .build();
                ensure_indexes(&self.commands, "created_at", retention, vec![state]).await
            })
            .await
            .map(|_| ())
    }

    /// The highest change number this process knows, when it learned it recently enough that
    /// the entry is surely still in the log: TTL pruning removes entries `retention` after their
    /// time, so a number older than half of that is read again. Appending right after an entry
    /// that exists can leave no hole.
    fn known_last(&self) -> Option<u64> {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = self.options.change_log_retention / 2;
        last.and_then(|(n, at)| (at.elapsed() < fresh).then_some(n))
    }

    /// Records that `n` is in the log now, unless a higher number is already known (which
    /// keeps the time it was learned).
    fn learned_last(&self, n: u64) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|(old, _)| n >= old) {
            *last = Some((n, Instant::now()));
        }
    }

    /// Some entry with `_id` in `(above, up_to]` (either end open when `None`), or `None`. One
    /// index probe with no sort: DocumentDB sorts in memory even on `_id` (a sorted read of
    /// the last entry of a 100,000-entry log took 160 ms, a probe 0.5 ms), so the log is only
    /// ever read by `_id` ranges.
    async fn probe(
        &self,
        above: Option<i128>,
        up_to: Option<i128>,
        concern: ReadConcern,
    ) -> Result<Option<i128>, StoreError> {
        let mut range = Document::new();
        if let Some(above) = above {
            // Nothing is stored above i64::MAX; everything is above a bound below i64::MIN.
            match i64::try_from(above) {
                Ok(n) => range.insert("$gt", n),
                Err(_) if above > 0 => return Ok(None),
                Err(_) => None,
            };
        }
        if let Some(up_to) = up_to {
            match i64::try_from(up_to) {
                Ok(n) => range.insert("$lte", n),
                Err(_) if up_to < 0 => return Ok(None),
                Err(_) => None,
            };
        }
        let filter = if range.is_empty() {
            doc! {}
        } else {
            doc! { "_id": range }
        };
        let found = self
            .changes
            .find_one(filter)
            .projection(doc! { "_id": 1 })
            .read_concern(concern)
            .await
            .map_err(map_err)?;
        found.map(|d| seq_of(&d).map(i128::from)).transpose()
    }

    /// The highest number in the log, searched from `from` (a number likely in the log, such
    /// as the cached last one): galloping up by index probes, then halving, so a cache that is
    /// a few entries behind costs a few round trips and a fresh process about twice the
    /// logarithm of the log's length.
    async fn highest(
        &self,
        from: Option<u64>,
        concern: ReadConcern,
    ) -> Result<Option<u64>, StoreError> {
        let from = from.map(|n| i128::from(n) - 1);
        let found = match self.probe(from, None, concern.clone()).await? {
            Some(n) => Some(n),
            // Everything from there on is gone: look anywhere.
            None if from.is_some() => self.probe(None, None, concern.clone()).await?,
            None => None,
        };
        let Some(mut have) = found else {
            return Ok(None);
        };
        // `have` is in the log; nothing is above `none_above`.
        let mut step = 1;
        let mut none_above = loop {
            let probe = have + step - 1;
            match self.probe(Some(probe), None, concern.clone()).await? {
                Some(n) => {
                    have = n;
                    step *= 2;
                }
                None => break probe,
            }
        };
        while none_above > have {
            let mid = have + (none_above - have) / 2;
            match self
                .probe(Some(mid), Some(none_above), concern.clone())
                .await?
            {
                Some(n) => have = n,
                None => none_above = mid,
            }
        }
        let have = u64::try_from(have).map_err(|_| {
            StoreError::internal(format!("the change log holds a negative number {have}"))
        })?;
        // The next search (or append) starts from here; only a number a majority holds, as
        // a failover may roll back one that only the primary has.
        if concern.level == mongodb::options::ReadConcernLevel::Majority {
            self.learned_last(have);
        }
        Ok(Some(have))
    }

    /// The lowest number in the log above `after` (`None`: the lowest of all), galloping down
    /// from `known` (an entry above it) or any entry above it, then halving.
    async fn lowest_above(
        &self,
        after: Option<i128>,
        known: Option<u64>,
    ) -> Result<Option<u64>, StoreError> {
        let concern = ReadConcern::majority();
        let found = match known {
            Some(n) => Some(i128::from(n)),
            None => self.probe(after, None, concern.clone()).await?,
        };
        let Some(mut have) = found else {
            return Ok(None);
        };
        // `have` is in the log; nothing is in `(after, none_up_to]`.
        let floor = after.unwrap_or(i128::from(i64::MIN) - 1);
        let mut step = 1;
        let mut none_up_to = loop {
            let probe = (have - step).max(floor);
            if probe <= floor {
                break floor;
            }
            match self
                .probe(Some(floor), Some(probe), concern.clone())
                .await?
            {
                Some(n) => {
                    have = n;
                    step *= 2;
                }
                None => break probe,
            }
        };
        while have - none_up_to > 1 {
            let mid = none_up_to + (have - none_up_to) / 2;
            match self
                .probe(Some(none_up_to), Some(mid), concern.clone())
                .await?
            {
                Some(n) => have = n,
                None => none_up_to = mid,
            }
        }
        u64::try_from(have).map(Some).map_err(|_| {
            StoreError::internal(format!("the change log holds a negative number {have}"))
        })
    }

    /// The entries in `(after, after + limit]`, ascending: with no hole in the log, the next
    /// `limit` entries, by one index range.
    async fn range_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedChange>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found: Vec<Document> = self
            .changes
            .find(doc! { "_id": { "$gt": after, "$lte": after.saturating_add(limit) } })
            .sort(doc! { "_id": 1 })
            .limit(limit)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        found.iter().map(read_change).collect()
    }

    async fn find_lease(
        &self,
        filter: Document,
        update: Document,
    ) -> Result<Option<LeaseState>, StoreError> {
        self.leases
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(read_lease)
            .transpose()
    }
}

#[async_trait]
impl Cluster for MongoCluster {
    async fn lease_state(&self) -> Result<Option<LeaseState>, StoreError> {
        self.ready().await?;
        self.leases
            .find_one(doc! { "_id": &self.options.lease_name })
            .await
            .map_err(map_err)?
            .as_ref()
            .map(read_lease)
            .transpose()
    }

    async fn take_lease(
        &self,
        instance: &str,
        seen: Option<&LeaseState>,
    ) -> Result<Option<LeaseState>, StoreError> {
        self.ready().await?;
        let now = DateTime::now();
        let Some(seen) = seen else {
            // The first take: an insert, which loses cleanly to whoever inserted first.
            let lease = doc! {
                "_id": &self.options.lease_name,
                "holder": instance,
                "term": 1_i64,
                "version": 1_i64,
                "since": now,
                "renewed_at": now,
            };
            return match self.leases.insert_one(&lease).await {
                Ok(_) => read_lease(&lease).map(Some),
                Err(e) if is_duplicate_key(&e) => Ok(None),
                Err(e) => Err(map_err(e)),
            };
        };
        self.find_lease(
            doc! { "_id": &self.options.lease_name, "version": to_i64(seen.version, "version")? },
            doc! {
                "$set": { "holder": instance, "since": now, "renewed_at": now },
                "$inc": { "term": 1_i64, "version": 1_i64 },
            },
        )
        .await
    }

    async fn renew_lease(
        &self,
        instance: &str,
        term: u64,
    ) -> Result<Option<LeaseState>, StoreError> {
        self.ready().await?;
        self.find_lease(
            doc! { "_id": &self.options.lease_name, "holder": instance, "term": to_i64(term, "term")? },
            doc! { "$set": { "renewed_at": DateTime::now() }, "$inc": { "version": 1_i64 } },
        )
        .await
    }

    async fn release_lease(&self, instance: &str, term: u64) -> Result<bool, StoreError> {
        self.ready().await?;
        let released = self
            .find_lease(
                doc! { "_id": &self.options.lease_name, "holder": instance, "term": to_i64(term, "term")? },
                doc! {
                    "$set": { "holder": Bson::Null, "renewed_at": DateTime::now() },
                    "$inc": { "version": 1_i64 },
                },
            )
            .await?;
        Ok(released.is_some())
    }

    /// One ordered `insert_many` with `_id` = last + 1, last + 2, ... in the common case. When
    /// another appender took a number first the insert stops there (ordered) with a duplicate
    /// key; the entries before it are in, the last number is read again and the rest tried
    /// after it. A number is only ever tried right after one known to be in the log, so the
    /// log has no hole. An empty log starts at the current time in microseconds with an entry
    /// marked `first`, whose unique index lets only one of several racing appenders start it.
    async fn append_changes(
        &self,
        instance: &str,
        payloads: Vec<String>,
    ) -> Result<RangeInclusive<u64>, StoreError> {
        if payloads.is_empty() {
            return Err(StoreError::internal(
                "append_changes: no payloads given (there is nothing to number)",
            ));
        }
        self.ready().await?;
        let at = DateTime::now();
        let mut entries: Vec<Document> = payloads
            .into_iter()
            .map(
                |payload| doc! { "_id": 0_i64, "at": at, "instance": instance, "payload": payload },
            )
            .collect();
        let mut done = 0;
        let mut first = None;
        let mut last = self.known_last();
        // The number another appender took first: where the search for the last starts.
        let mut taken = None;
        for _ in 0..APPEND_ATTEMPTS {
            let last_known = match last {
                Some(n) => Some(n),
                // Read from the primary's own data (read concern local): an insert another
                // appender has not yet had acknowledged by a majority already takes its number.
                None => {
                    self.highest(taken.or(self.known_last()), ReadConcern::local())
                        .await?
                }
            };
            let start = match last_known {
                Some(n) => n.checked_add(1).ok_or_else(|| {
                    StoreError::internal("the change log's sequence numbers are exhausted")
                })?,
                None => now_micros()?,
            };
            for (i, entry) in entries[done..].iter_mut().enumerate() {
                let seq = to_i64(start + i as u64, "sequence number")?;
                entry.insert("_id", seq);
                if last_known.is_none() && i == 0 {
                    entry.insert("first", true);
                } else {
                    entry.remove("first");
                }
            }
            let result = self
                .changes
                .insert_many(&entries[done..])
                .ordered(true)
                .await;
            match result {
                Ok(_) => {
                    let n = entries.len() - done;
                    let last = start + n as u64 - 1;
                    self.learned_last(last);
                    return Ok(*first.get_or_insert(start)..=last);
                }
                Err(e) => {
                    let Some(inserted) = duplicate_at(&e) else {
                        return Err(map_err(e));
                    };
                    if inserted > 0 {
                        first.get_or_insert(start);
                        done += inserted;
                        self.learned_last(start + inserted as u64 - 1);
                    }
                    // Taken, unless the duplicate was another start of an empty log (then the
                    // search finds that start anyway).
                    taken = Some(start + inserted as u64);
                    last = None;
                }
            }
        }
        Err(StoreError::unavailable(format!(
            "the change log kept moving under concurrent appenders: {} of {} entries appended \
             after {APPEND_ATTEMPTS} attempts",
            done,
            entries.len()
        )))
    }

    /// One index range in the common case: `(after, after + limit]`, which with no hole in
    /// the log holds exactly the next `limit` entries (an unbounded `_id > after` lets
    /// DocumentDB's planner scan the table in its own order: 15 ms instead of 1 ms on a
    /// 120,000-entry log). When it does not start right after `after` (nothing new, or a
    /// reader behind what the log still holds) the first entry above `after` is searched and
    /// the range read from it.
    async fn changes_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedChange>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.ready().await?;
        // Numbers beyond i64 cannot be stored, so nothing lies after them.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let found = self.range_after(after, limit).await?;
        let next = i128::from(after) + 1;
        if found.first().is_some_and(|c| i128::from(c.seq) == next) {
            return Ok(found);
        }
        let known = found.first().map(|c| c.seq);
        match self.lowest_above(Some(i128::from(after)), known).await? {
            // The range began at the first entry and is full: it is the answer.
            Some(first) if Some(first) == known && found.len() == limit => Ok(found),
            Some(first) => {
                self.range_after(to_i64(first, "sequence number")? - 1, limit)
                    .await
            }
            None => Ok(Vec::new()),
        }
    }

    async fn change_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.ready().await?;
        let (highest, lowest) = tokio::try_join!(
            self.highest(self.known_last(), ReadConcern::majority()),
            self.lowest_above(None, None)
        )?;
        Ok(highest.zip(lowest))
    }

    async fn watch_changes(&self) -> Result<Option<BoxStream<'static, ()>>, StoreError> {
        self.ready().await?;
        let watched = self
            .changes
            .watch()
            .pipeline([doc! { "$match": { "operationType": "insert" } }])
            .await;
        match watched {
            Ok(stream) => Ok(Some(
                stream
                    .take_while(|event| {
                        if let Err(e) = event {
                            tracing::warn!(error = %e.kind, "change stream on the change log ended");
                        }
                        std::future::ready(event.is_ok())
                    })
                    .map(|_| ())
                    .boxed(),
            )),
            Err(e) if no_change_streams(&e) => {
                tracing::info!(
                    error = %e.kind,
                    "the server has no change streams; the change log is to be polled"
                );
                Ok(None)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    async fn put_shared(&self, key: &str, json: String) -> Result<(), StoreError> {
        self.ready().await?;
        self.shared
            .update_one(
                doc! { "_id": key },
                doc! { "$set": { "json": json, "at": DateTime::now() } },
            )
            .upsert(true)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn get_shared(&self, key: &str) -> Result<Option<(String, Timestamp)>, StoreError> {
        self.ready().await?;
        let Some(d) = self
            .shared
            .find_one(doc! { "_id": key })
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let json = d
            .get_str("json")
            .map_err(|e| corrupt(SHARED, &d, "json", e))?;
        let at = d
            .get_datetime("at")
            .map_err(|e| corrupt(SHARED, &d, "at", e))?;
        Ok(Some((json.to_owned(), at.to_chrono())))
    }

    async fn submit_command(&self, instance: &str, payload: String) -> Result<String, StoreError> {
        self.ready().await?;
        let id = bson::oid::ObjectId::new().to_hex();
        self.commands
            .insert_one(doc! {
                "_id": &id,
                "instance": instance,
                "payload": payload,
                "state": PENDING,
                "created_at": DateTime::now(),
            })
            .await
            .map_err(map_err)?;
        Ok(id)
    }

    /// One `find_one_and_update` per command: the filter on `state: pending` makes each
    /// claim atomic, so two claimers never both get one.
    async fn claim_commands(
        &self,
        instance: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.ready().await?;
        let mut claimed = Vec::new();
        while claimed.len() < limit {
            let Some(d) = self
                .commands
                .find_one_and_update(
                    doc! { "state": PENDING },
                    doc! { "$set": { "state": TAKEN, "taken_by": instance, "taken_at": DateTime::now() } },
                )
                .sort(doc! { "state": 1, "created_at": 1, "_id": 1 })
                .return_document(ReturnDocument::After)
                .await
                .map_err(map_err)?
            else {
                break;
            };
            let id = d
                .get_str("_id")
                .map_err(|e| corrupt(COMMANDS, &d, "_id", e))?;
            let payload = d
                .get_str("payload")
                .map_err(|e| corrupt(COMMANDS, &d, "payload", e))?;
            claimed.push((id.to_owned(), payload.to_owned()));
        }
        Ok(claimed)
    }

    async fn complete_command(&self, id: &str, result: String) -> Result<(), StoreError> {
        self.ready().await?;
        let updated = self
            .commands
            .update_one(
                doc! { "_id": id, "state": { "$ne": PENDING } },
                doc! { "$set": { "state": DONE, "result": result, "done_at": DateTime::now() } },
            )
            .await
            .map_err(map_err)?;
        if updated.matched_count == 1 {
            return Ok(());
        }
        match self
            .commands
            .find_one(doc! { "_id": id })
            .await
            .map_err(map_err)?
        {
            None => Err(StoreError::NotFound),
            Some(_) => Err(StoreError::internal(format!(
                "complete_command: command {id} was never claimed"
            ))),
        }
    }

    async fn command_result(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.ready().await?;
        let d = self
            .commands
            .find_one(doc! { "_id": id })
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        if d.get_str("state") != Ok(DONE) {
            return Ok(None);
        }
        let result = d
            .get_str("result")
            .map_err(|e| corrupt(COMMANDS, &d, "result", e))?;
        Ok(Some(result.to_owned()))
    }
}

/// Creates a collection's indexes in one `createIndexes` command: a TTL index on `ttl_field`
/// and `others`. One command matters: the indexes of the command that creates the collection
/// are built at once, while DocumentDB builds an index added later in a background job, and
/// the unique ones must hold from the first write. A TTL index with another expiry is
/// replaced: `collMod` cannot turn a plain index into a TTL one, and DocumentDB does not take
/// `keyPattern` there, so it is dropped by its default name and created again.
async fn ensure_indexes(
    collection: &Collection<Document>,
    ttl_field: &str,
    after: Duration,
    others: Vec<IndexModel>,
) -> Result<(), StoreError> {
    let ttl = IndexModel::builder()
        .keys(doc! { ttl_field: 1 })
        .options(IndexOptions::builder().expire_after(Some(after)).build())
        .build();
    let mut models = vec![ttl.clone()];
    models.extend(others.iter().cloned());
    match collection.create_indexes(models).await {
        Ok(_) => {}
        Err(e) if is_index_options_conflict(&e) => {
            collection
                .drop_index(format!("{ttl_field}_1"))
                .await
                .map_err(map_err)?;
            collection.create_index(ttl).await.map_err(map_err)?;
            // The others, in case the conflict stopped the command before them.
            if !others.is_empty() {
                collection.create_indexes(others).await.map_err(map_err)?;
            }
        }
        Err(e) => return Err(map_err(e)),
    }
    Ok(())
}

/// How many entries an ordered `insert_many` wrote before it met a duplicate key, or `None`
/// when it failed for another reason.
fn duplicate_at(e: &mongodb::error::Error) -> Option<usize> {
    match &*e.kind {
        ErrorKind::InsertMany(failure) => {
            if failure.write_concern_error.is_some() {
                return None;
            }
            let errors = failure.write_errors.as_ref()?;
            let first = errors.iter().min_by_key(|w| w.index)?;
            (first.code == DUPLICATE_KEY).then_some(first.index)
        }
        _ if is_duplicate_key(e) => Some(0),
        _ => None,
    }
}

/// Whether a `watch` failed because the server has no change streams: DocumentDB answers
/// 115 (CommandNotSupported), a standalone mongod 40573 (only on replica sets), older
/// servers 40324 (unknown stage).
fn no_change_streams(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Command(c) => {
            matches!(c.code, 115 | 40573 | 40324)
                || c.message.to_ascii_lowercase().contains("changestream")
                || c.message.to_ascii_lowercase().contains("change stream")
        }
        _ => false,
    }
}

/// The current time in microseconds since the epoch.
fn now_micros() -> Result<u64, StoreError> {
    u64::try_from(chrono::Utc::now().timestamp_micros())
        .map_err(|_| StoreError::internal("the clock is before 1970"))
}

fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::internal(format!("{what} {n} is too large to store")))
}

fn corrupt(
    collection: &str,
    d: &Document,
    field: &str,
    what: impl std::fmt::Display,
) -> StoreError {
    StoreError::Corrupt {
        detail: format!(
            "{collection} document {}: {field}: {what}",
            d.get("_id")
                .map_or_else(|| "without _id".to_owned(), ToString::to_string)
        ),
    }
}

/// A non-negative integer field, however the server typed it.
fn number(collection: &str, d: &Document, field: &str) -> Result<u64, StoreError> {
    let n = match d.get(field) {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        other => {
            return Err(corrupt(
                collection,
                d,
                field,
                format!("not an integer: {other:?}"),
            ));
        }
    };
    u64::try_from(n).map_err(|_| corrupt(collection, d, field, format!("negative: {n}")))
}

fn seq_of(d: &Document) -> Result<u64, StoreError> {
    number(CHANGES, d, "_id")
}

fn read_change(d: &Document) -> Result<LoggedChange, StoreError> {
    let field = |name: &str| {
        d.get_str(name)
            .map(str::to_owned)
            .map_err(|e| corrupt(CHANGES, d, name, e))
    };
    Ok(LoggedChange {
        seq: seq_of(d)?,
        at: d
            .get_datetime("at")
            .map_err(|e| corrupt(CHANGES, d, "at", e))?
            .to_chrono(),
        instance: field("instance")?,
        payload: field("payload")?,
    })
}

fn read_lease(d: &Document) -> Result<LeaseState, StoreError> {
    let holder = match d.get("holder") {
        Some(Bson::String(s)) => Some(s.clone()),
        Some(Bson::Null) | None => None,
        Some(other) => {
            return Err(corrupt(
                LEASES,
                d,
                "holder",
                format!("not a string: {other}"),
            ));
        }
    };
    let date = |name: &str| {
        d.get_datetime(name)
            .map(|t| t.to_chrono())
            .map_err(|e| corrupt(LEASES, d, name, e))
    };
    Ok(LeaseState {
        holder,
        term: number(LEASES, d, "term")?,
        version: number(LEASES, d, "version")?,
        since: date("since")?,
        renewed_at: date("renewed_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_read_back_and_bad_ones_are_named() {
        let at = DateTime::from_millis(1_780_000_000_000);
        let stored = doc! {
            "_id": "ami", "holder": "web-1:8080", "term": 3_i64, "version": 9_i32,
            "since": at, "renewed_at": at,
        };
        let lease = read_lease(&stored).expect("valid");
        assert_eq!(lease.holder.as_deref(), Some("web-1:8080"));
        assert_eq!((lease.term, lease.version), (3, 9));
        assert_eq!(lease.since, at.to_chrono());
        let mut released = stored.clone();
        released.insert("holder", Bson::Null);
        assert_eq!(read_lease(&released).expect("valid").holder, None);

        let rows: Vec<(&str, Bson, &str)> = vec![
            (
                "holder",
                Bson::Int32(1),
                "cluster_leases document \"ami\": holder: not a string: 1",
            ),
            (
                "term",
                Bson::String("3".into()),
                "cluster_leases document \"ami\": term: not an integer",
            ),
            (
                "version",
                Bson::Int64(-1),
                "cluster_leases document \"ami\": version: negative: -1",
            ),
            (
                "since",
                Bson::Null,
                "cluster_leases document \"ami\": since:",
            ),
        ];
        for (field, value, want) in rows {
            let mut bad = stored.clone();
            bad.insert(field, value);
            let err = read_lease(&bad).expect_err(field);
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
            assert!(
                err.to_string().contains(want),
                "{err} does not contain {want}"
            );
        }
    }

    #[test]
    fn changes_read_back_and_bad_ones_are_named() {
        let at = DateTime::from_millis(1_780_000_000_000);
        let stored =
            doc! { "_id": 1_780_000_000_000_123_i64, "at": at, "instance": "a", "payload": "{}" };
        let change = read_change(&stored).expect("valid");
        assert_eq!(change.seq, 1_780_000_000_000_123);
        assert_eq!(
            (change.instance.as_str(), change.payload.as_str()),
            ("a", "{}")
        );
        let mut bad = stored.clone();
        bad.remove("payload");
        let err = read_change(&bad).expect_err("no payload");
        assert!(
            err.to_string()
                .contains("extension_changes document 1780000000000123: payload:"),
            "{err}"
        );
        let err = read_change(&doc! { "_id": "x" }).expect_err("bad id");
        assert!(err.to_string().contains("_id: not an integer"), "{err}");
    }

    #[test]
    fn numbers_beyond_i64_are_refused_by_name() {
        assert_eq!(to_i64(7, "term").expect("fits"), 7);
        let err = to_i64(u64::MAX, "term").expect_err("too large");
        assert!(
            err.to_string()
                .contains("term 18446744073709551615 is too large"),
            "{err}"
        );
    }
}
