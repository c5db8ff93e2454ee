//! `store::cluster` against a real MongoDB-wire server: the lease, the change log, shared
//! documents and commands, with racing instances. Runs when `TEST_MONGODB_URI` is set
//! (otherwise one line says it was skipped); every case uses its own database, dropped after.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use store::cluster::{Cluster, ClusterOptions};
use store::{Repository, StoreOptions};

fn options() -> StoreOptions {
    StoreOptions {
        last_seen_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// The embedded store belongs to one process: it has no cluster to offer.
#[tokio::test]
async fn the_embedded_store_has_no_cluster() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = store::EmbeddedStore::open(dir.path(), options()).await?;
    ensure!(store.cluster(ClusterOptions::default()).is_none());
    Ok(())
}

#[cfg(not(feature = "mongodb"))]
#[test]
fn mongodb_cluster() {
    support::skipped("cluster", "built without feature `mongodb`");
}

#[cfg(feature = "mongodb")]
mod mongo {
    use super::*;
    use store::{MongoConfig, MongoStore};

    /// A throw-away database for one case, with a cluster on it.
    pub struct Case {
        pub store: MongoStore,
        pub config: MongoConfig,
    }

    impl Case {
        pub async fn new(uri: &str, case: &str) -> Result<Self> {
            let config = MongoConfig::new(uri, support::throwaway_database("extstatus_cl", case));
            let store = MongoStore::connect(&config, options()).await?;
            Ok(Self { store, config })
        }

        /// A cluster as one instance sees it (each has its own cache, as separate processes
        /// would).
        pub fn cluster(&self) -> Result<Arc<dyn Cluster>> {
            self.cluster_with(ClusterOptions::default())
        }

        pub fn cluster_with(&self, options: ClusterOptions) -> Result<Arc<dyn Cluster>> {
            self.store.cluster(options).context("MongoDB has a cluster")
        }

        /// A plain driver handle on the case's database, to look at what was stored.
        pub async fn database(&self) -> Result<mongodb::Database> {
            let client = mongodb::Client::with_uri_str(&self.config.uri).await?;
            Ok(client.database(&self.config.database))
        }

        pub async fn cleanup(&self) -> Result<()> {
            self.database().await?.drop().await?;
            Ok(())
        }
    }

    pub fn uri() -> Option<String> {
        support::mongodb_uri("cluster")
    }
}

#[cfg(feature = "mongodb")]
mod cases {
    use super::mongo::Case;
    use super::*;
    use futures_util::StreamExt as _;
    use store::StoreError;
    use store::cluster::LoggedChange;

    fn micros_now() -> u64 {
        u64::try_from(chrono::Utc::now().timestamp_micros()).expect("after 1970")
    }

    pub async fn lease_take_renew_release(case: &Case) -> Result<()> {
        let a = case.cluster()?;
        let b = case.cluster()?;
        ensure!(a.lease_state().await?.is_none());
        let before = domain::now();
        let first = a.take_lease("a", None).await?.context("first take")?;
        ensure!(first.holder.as_deref() == Some("a"), "{first:?}");
        ensure!(first.term == 1 && first.version == 1, "{first:?}");
        ensure!(
            first.since >= before - chrono::Duration::seconds(1),
            "{first:?}"
        );
        ensure!(b.lease_state().await?.as_ref() == Some(&first));
        // Someone else saw no lease either: the insert loses cleanly.
        ensure!(b.take_lease("b", None).await?.is_none());

        let renewed = a.renew_lease("a", 1).await?.context("renew")?;
        ensure!(renewed.term == 1 && renewed.version == 2, "{renewed:?}");
        ensure!(renewed.since == first.since && renewed.renewed_at >= first.renewed_at);
        ensure!(b.renew_lease("b", 1).await?.is_none(), "not b's lease");
        ensure!(a.renew_lease("a", 2).await?.is_none(), "not that term");
        // A take from a stale view loses; from the current one it wins, with the next term.
        ensure!(b.take_lease("b", Some(&first)).await?.is_none());
        let taken = b
            .take_lease("b", Some(&renewed))
            .await?
            .context("take over")?;
        ensure!(taken.holder.as_deref() == Some("b"), "{taken:?}");
        ensure!(taken.term == 2 && taken.version == 3, "{taken:?}");
        // The old holder can neither renew nor release any more.
        ensure!(a.renew_lease("a", 1).await?.is_none());
        ensure!(!a.release_lease("a", 1).await?);
        ensure!(a.lease_state().await?.as_ref() == Some(&taken));

        ensure!(b.release_lease("b", 2).await?);
        let released = a.lease_state().await?.context("still there")?;
        ensure!(released.holder.is_none(), "{released:?}");
        ensure!(released.term == 2 && released.version == 4, "{released:?}");
        ensure!(!b.release_lease("b", 2).await?, "released twice");
        ensure!(
            b.renew_lease("b", 2).await?.is_none(),
            "renewed after release"
        );
        let again = a
            .take_lease("a", Some(&released))
            .await?
            .context("retake")?;
        ensure!(again.holder.as_deref() == Some("a"), "{again:?}");
        ensure!(again.term == 3 && again.version == 5, "{again:?}");
        Ok(())
    }

    /// Eight instances race for a lease nobody holds, then for one they all saw: each time
    /// exactly one wins, and the lease says who.
    pub async fn eight_racing_takers_one_wins(case: &Case) -> Result<()> {
        let mut seen = None;
        for round in 0..3 {
            let mut tasks = Vec::new();
            for i in 0..8 {
                let cluster = case.cluster()?;
                let seen = seen.clone();
                tasks.push(tokio::spawn(async move {
                    let me = format!("instance-{i}");
                    let won = cluster.take_lease(&me, seen.as_ref()).await?;
                    anyhow::Ok(won.map(|state| (me, state)))
                }));
            }
            let mut winners = Vec::new();
            for task in tasks {
                if let Some(won) = task.await?? {
                    winners.push(won);
                }
            }
            ensure!(winners.len() == 1, "round {round}: {winners:?}");
            let (me, state) = winners.remove(0);
            ensure!(state.holder.as_deref() == Some(me.as_str()), "{state:?}");
            ensure!(state.term == round + 1, "round {round}: {state:?}");
            let stored = case.cluster()?.lease_state().await?;
            ensure!(stored.as_ref() == Some(&state), "{stored:?} vs {state:?}");
            seen = Some(state);
        }
        Ok(())
    }

    /// Reads the whole log by pages of `page`.
    async fn read_all(cluster: &dyn Cluster, page: usize) -> Result<Vec<LoggedChange>> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let got = cluster.changes_after(after, page).await?;
            ensure!(got.len() <= page, "{} > {page}", got.len());
            let Some(last) = got.last() else { break };
            after = last.seq;
            all.extend(got);
        }
        Ok(all)
    }

    /// Four instances append 250 payloads each, in batches of varying size, all at once: the
    /// log holds exactly the numbers first..first+999, each payload once, every task's
    /// payloads in its own order, each batch's first payload under the number it was told.
    pub async fn concurrent_appends_leave_no_hole(case: &Case) -> Result<()> {
        const TASKS: usize = 4;
        const EACH: usize = 250;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let cluster = case.cluster()?;
            tasks.push(tokio::spawn(async move {
                let mut told = Vec::new();
                let mut next = 0;
                let sizes = [1, 3, 1, 7, 2, 20, 1, 1, 5];
                let mut k = 0;
                while next < EACH {
                    let n = sizes[(k + t) % sizes.len()].min(EACH - next);
                    k += 1;
                    let payloads: Vec<String> =
                        (next..next + n).map(|i| format!("t{t}-{i:03}")).collect();
                    let first = *cluster
                        .append_changes(&format!("i{t}"), payloads)
                        .await?
                        .start();
                    told.push((first, format!("t{t}-{next:03}")));
                    next += n;
                }
                anyhow::Ok(told)
            }));
        }
        let mut told = Vec::new();
        for task in tasks {
            told.extend(task.await??);
        }
        let all = read_all(&*case.cluster()?, 64).await?;
        ensure!(all.len() == TASKS * EACH, "{} entries", all.len());
        let first = all[0].seq;
        for (i, entry) in all.iter().enumerate() {
            ensure!(
                entry.seq == first + i as u64,
                "entry {i} is {} after {first}: a hole or a duplicate",
                entry.seq
            );
        }
        let payloads: HashSet<&str> = all.iter().map(|c| c.payload.as_str()).collect();
        ensure!(payloads.len() == TASKS * EACH, "a payload is there twice");
        for t in 0..TASKS {
            let mine: Vec<&LoggedChange> = all
                .iter()
                .filter(|c| c.instance == format!("i{t}"))
                .collect();
            let expected: Vec<String> = (0..EACH).map(|i| format!("t{t}-{i:03}")).collect();
            let got: Vec<&str> = mine.iter().map(|c| c.payload.as_str()).collect();
            ensure!(got == expected, "task {t} out of order: {got:?}");
        }
        let by_seq: BTreeMap<u64, &str> = all.iter().map(|c| (c.seq, c.payload.as_str())).collect();
        for (seq, payload) in &told {
            ensure!(
                by_seq.get(seq) == Some(&payload.as_str()),
                "told {seq} for {payload}, the log has {:?}",
                by_seq.get(seq)
            );
        }
        Ok(())
    }

    pub async fn changes_after_pages_and_bounds(case: &Case) -> Result<()> {
        let cluster = case.cluster()?;
        ensure!(cluster.change_bounds().await?.is_none());
        ensure!(cluster.changes_after(0, 10).await?.is_empty());
        let before = domain::now();
        let payloads: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i}}}")).collect();
        let appended = cluster.append_changes("a", payloads.clone()).await?;
        let first = *appended.start();
        ensure!(*appended.end() == first + 9, "{appended:?}");
        // A second instance continues right after, in one call.
        let other = case.cluster()?;
        let next = *other
            .append_changes("b", vec!["eleven".into()])
            .await?
            .start();
        ensure!(next == first + 10, "{next} after {first}");
        ensure!(
            cluster.change_bounds().await? == Some((first + 10, first)),
            "{:?}",
            cluster.change_bounds().await?
        );

        let mut pages = Vec::new();
        let mut after = first - 1;
        loop {
            let page = cluster.changes_after(after, 3).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            pages.push(page);
        }
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        ensure!(sizes == [3, 3, 3, 2], "{sizes:?}");
        let all: Vec<LoggedChange> = pages.into_iter().flatten().collect();
        for (i, c) in all.iter().enumerate() {
            ensure!(c.seq == first + i as u64, "{c:?}");
            ensure!(c.at >= before - chrono::Duration::seconds(1), "{c:?}");
        }
        ensure!(
            all[0].payload == "{\"n\":0}" && all[0].instance == "a",
            "{:?}",
            all[0]
        );
        ensure!(
            all[10].payload == "eleven" && all[10].instance == "b",
            "{:?}",
            all[10]
        );
        // From the middle, at the end, past the end, nothing asked for, beyond what is storable.
        let mid = cluster.changes_after(first + 4, 2).await?;
        ensure!(
            mid.iter().map(|c| c.seq).collect::<Vec<_>>() == [first + 5, first + 6],
            "{mid:?}"
        );
        ensure!(cluster.changes_after(first + 10, 5).await?.is_empty());
        ensure!(cluster.changes_after(u64::MAX, 5).await?.is_empty());
        ensure!(cluster.changes_after(0, 0).await?.is_empty());
        // An empty append is refused, and writes nothing.
        let err = cluster
            .append_changes("a", Vec::new())
            .await
            .expect_err("empty");
        ensure!(err.to_string().contains("no payloads"), "{err}");
        ensure!(cluster.change_bounds().await? == Some((first + 10, first)));
        Ok(())
    }

    /// The first number of an empty log is the time in microseconds, so numbers never start
    /// again below what browsers saw before the log was pruned.
    pub async fn an_empty_log_starts_at_the_time_in_micros(case: &Case) -> Result<()> {
        let cluster = case.cluster()?;
        let before = micros_now();
        let first = *cluster.append_changes("a", vec!["x".into()]).await?.start();
        let after = micros_now();
        ensure!(
            before <= first && first <= after,
            "{before} <= {first} <= {after}"
        );
        Ok(())
    }

    /// Several instances start an empty log at once: one of them starts it, the others follow
    /// right after, without a hole.
    pub async fn racing_starts_of_an_empty_log_leave_no_hole(case: &Case) -> Result<()> {
        let mut tasks = Vec::new();
        for t in 0..6 {
            let cluster = case.cluster()?;
            tasks.push(tokio::spawn(async move {
                cluster
                    .append_changes(&format!("i{t}"), vec![format!("p{t}"), format!("q{t}")])
                    .await
            }));
        }
        for task in tasks {
            task.await??;
        }
        let all = read_all(&*case.cluster()?, 100).await?;
        ensure!(all.len() == 12, "{all:?}");
        for (i, c) in all.iter().enumerate() {
            ensure!(c.seq == all[0].seq + i as u64, "a hole at {i}: {all:?}");
        }
        Ok(())
    }

    /// The entry that starts a log is marked, and a unique index lets no second one in: that
    /// is what stops two instances from starting an empty log at two different times.
    pub async fn only_one_entry_starts_a_log(case: &Case) -> Result<()> {
        let cluster = case.cluster()?;
        let first = *cluster
            .append_changes("a", vec!["x".into(), "y".into()])
            .await?
            .start();
        let db = case.database().await?;
        let changes = db.collection::<bson::Document>("extension_changes");
        let marked: Vec<i64> = changes
            .find(bson::doc! { "first": { "$exists": true } })
            .await?
            .map(|d| anyhow::Ok(d?.get_i64("_id")?))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        ensure!(marked == [i64::try_from(first)?], "{marked:?}");
        let err = changes
            .insert_one(bson::doc! { "_id": 1_i64, "first": true, "at": bson::DateTime::now() })
            .await
            .expect_err("a second start");
        ensure!(
            err.to_string().contains("11000")
                || err.to_string().to_lowercase().contains("duplicate"),
            "{err}"
        );
        // Entries that do not start a log are not held back by it.
        cluster.append_changes("a", vec!["z".into()]).await?;
        ensure!(cluster.change_bounds().await? == Some((first + 2, first)));
        Ok(())
    }

    /// An append meets an entry another appender wrote in the middle of its numbers: the
    /// entries before it stay, the rest follow right after it, in order, without a hole.
    pub async fn an_append_that_meets_another_continues_after_it(case: &Case) -> Result<()> {
        let cluster = case.cluster()?;
        let start = *cluster.append_changes("a", vec!["0".into()]).await?.start();
        // Another appender took start + 3 while this instance still believes start is the last.
        let db = case.database().await?;
        db.collection::<bson::Document>("extension_changes")
            .insert_one(bson::doc! {
                "_id": i64::try_from(start + 3)?,
                "at": bson::DateTime::now(),
                "instance": "b",
                "payload": "theirs",
            })
            .await?;
        let payloads: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
        // The range names the first and the last of its own entries, with theirs between.
        let appended = cluster.append_changes("a", payloads).await?;
        ensure!(
            appended == (start + 1..=start + 6),
            "{appended:?} after {start}"
        );
        let all = read_all(&*cluster, 100).await?;
        let got: Vec<(u64, &str)> = all
            .iter()
            .map(|c| (c.seq - start, c.payload.as_str()))
            .collect();
        ensure!(
            got == [
                (0, "0"),
                (1, "1"),
                (2, "2"),
                (3, "theirs"),
                (4, "3"),
                (5, "4"),
                (6, "5")
            ],
            "{got:?}"
        );
        Ok(())
    }

    /// The oldest entries are gone (as the TTL index removes them): bounds, reads from before
    /// the start, from inside and near the end, and appends by an instance that knows nothing
    /// yet all work from what is left; an emptied log starts again at the time, above it all.
    pub async fn a_pruned_log_reads_from_what_is_left(case: &Case) -> Result<()> {
        let cluster = case.cluster()?;
        let payloads: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        let f = *cluster.append_changes("a", payloads).await?.start();
        let changes = case
            .database()
            .await?
            .collection::<bson::Document>("extension_changes");
        changes
            .delete_many(bson::doc! { "_id": { "$lt": i64::try_from(f + 20)? } })
            .await?;
        ensure!(cluster.change_bounds().await? == Some((f + 49, f + 20)));
        let seqs = |got: Vec<LoggedChange>| got.iter().map(|c| c.seq - f).collect::<Vec<_>>();
        let page = seqs(cluster.changes_after(0, 10).await?);
        ensure!(page == (20..30).collect::<Vec<_>>(), "{page:?}");
        let page = seqs(cluster.changes_after(f + 5, 10).await?);
        ensure!(page == (20..30).collect::<Vec<_>>(), "{page:?}");
        let page = seqs(cluster.changes_after(f + 19, 3).await?);
        ensure!(page == [20, 21, 22], "{page:?}");
        let page = seqs(cluster.changes_after(f + 25, 100).await?);
        ensure!(page == (26..50).collect::<Vec<_>>(), "{page:?}");
        // An instance with nothing cached finds the end.
        let fresh = case.cluster()?;
        ensure!(fresh.append_changes("b", vec!["50".into()]).await? == (f + 50..=f + 50));
        ensure!(fresh.change_bounds().await? == Some((f + 50, f + 20)));
        // Everything gone: the next start is the time, above every number used before.
        changes.delete_many(bson::doc! {}).await?;
        let fresh = case.cluster()?;
        ensure!(fresh.change_bounds().await?.is_none());
        ensure!(fresh.changes_after(0, 10).await?.is_empty());
        let again = *fresh.append_changes("b", vec!["new".into()]).await?.start();
        ensure!(again > f + 50, "{again} <= {}", f + 50);
        ensure!(fresh.change_bounds().await? == Some((again, again)));
        Ok(())
    }

    async fn ttl_seconds(case: &Case, collection: &str, name: &str) -> Result<Option<i64>> {
        let db = case.database().await?;
        let mut cursor = db
            .collection::<bson::Document>(collection)
            .list_indexes()
            .await?;
        while let Some(index) = cursor.next().await {
            let index = index?;
            if index.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name) {
                return Ok(index
                    .options
                    .and_then(|o| o.expire_after)
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
            }
        }
        anyhow::bail!("no index {name} on {collection}")
    }

    /// The change log and the commands expire by a TTL index with the configured retention;
    /// another retention replaces it.
    pub async fn ttl_indexes_follow_the_retention(case: &Case) -> Result<()> {
        let options = |secs| ClusterOptions {
            change_log_retention: Duration::from_secs(secs),
            lease_name: "ami".into(),
        };
        let cluster = case.cluster_with(options(3600))?;
        cluster.append_changes("a", vec!["x".into()]).await?;
        ensure!(ttl_seconds(case, "extension_changes", "at_1").await? == Some(3600));
        ensure!(ttl_seconds(case, "cluster_commands", "created_at_1").await? == Some(3600));
        let cluster = case.cluster_with(options(7200))?;
        ensure!(cluster.change_bounds().await?.is_some());
        ensure!(ttl_seconds(case, "extension_changes", "at_1").await? == Some(7200));
        ensure!(ttl_seconds(case, "cluster_commands", "created_at_1").await? == Some(7200));
        // The entries stay.
        ensure!(read_all(&*cluster, 10).await?.len() == 1);
        Ok(())
    }

    /// Forty commands, four holders claiming at once: each command is claimed exactly once.
    pub async fn commands_are_claimed_once(case: &Case) -> Result<()> {
        let submitter = case.cluster()?;
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(
                submitter
                    .submit_command("web-1", format!("pause {i}"))
                    .await?,
            );
        }
        ensure!(ids.iter().collect::<HashSet<_>>().len() == 40, "ids repeat");
        let mut tasks = Vec::new();
        for t in 0..4 {
            let cluster = case.cluster()?;
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = cluster.claim_commands(&format!("h{t}"), 3).await?;
                    if got.is_empty() {
                        return anyhow::Ok(mine);
                    }
                    ensure!(got.len() <= 3, "{got:?}");
                    mine.extend(got);
                }
            }));
        }
        let mut claimed = Vec::new();
        for task in tasks {
            claimed.extend(task.await??);
        }
        ensure!(claimed.len() == 40, "{} claims", claimed.len());
        let claimed_ids: HashSet<&String> = claimed.iter().map(|(id, _)| id).collect();
        ensure!(claimed_ids.len() == 40, "a command was claimed twice");
        ensure!(
            claimed_ids == ids.iter().collect(),
            "claimed other commands"
        );
        for (id, payload) in &claimed {
            let i = ids.iter().position(|x| x == id).context("known id")?;
            ensure!(*payload == format!("pause {i}"), "{id}: {payload}");
        }
        ensure!(submitter.claim_commands("h0", 5).await?.is_empty());
        Ok(())
    }

    pub async fn command_results_round_trip(case: &Case) -> Result<()> {
        let web = case.cluster()?;
        let holder = case.cluster()?;
        let first = web.submit_command("web", "pause 1001".into()).await?;
        let second = web.submit_command("web", "unpause 1002".into()).await?;
        ensure!(web.command_result(&first).await?.is_none(), "pending");
        // Completing a command nobody claimed is an error, and stores nothing.
        let err = holder
            .complete_command(&first, "early".into())
            .await
            .expect_err("unclaimed");
        ensure!(err.to_string().contains("never claimed"), "{err}");
        // Oldest first, one at a time when asked so.
        let claimed = holder.claim_commands("holder", 1).await?;
        ensure!(
            claimed == [(first.clone(), "pause 1001".to_owned())],
            "{claimed:?}"
        );
        ensure!(web.command_result(&first).await?.is_none(), "running");
        holder
            .complete_command(&first, "{\"ok\":true}".into())
            .await?;
        ensure!(web.command_result(&first).await?.as_deref() == Some("{\"ok\":true}"));
        let claimed = holder.claim_commands("holder", 10).await?;
        ensure!(
            claimed == [(second.clone(), "unpause 1002".to_owned())],
            "{claimed:?}"
        );
        ensure!(web.command_result(&second).await?.is_none());
        for unknown in ["0123456789abcdef01234567", "not an id"] {
            ensure!(matches!(
                web.command_result(unknown).await,
                Err(StoreError::NotFound)
            ));
            ensure!(matches!(
                holder.complete_command(unknown, "x".into()).await,
                Err(StoreError::NotFound)
            ));
        }
        ensure!(holder.claim_commands("holder", 0).await?.is_empty());
        Ok(())
    }

    pub async fn shared_documents_round_trip(case: &Case) -> Result<()> {
        let a = case.cluster()?;
        let b = case.cluster()?;
        ensure!(b.get_shared("queues").await?.is_none());
        let before = domain::now();
        a.put_shared("queues", "{\"sales\":1}".into()).await?;
        let (json, at) = b.get_shared("queues").await?.context("written")?;
        ensure!(json == "{\"sales\":1}", "{json}");
        ensure!(at >= before - chrono::Duration::seconds(1), "{at}");
        a.put_shared("queues", "{\"sales\":2}".into()).await?;
        ensure!(b.get_shared("queues").await?.context("there")?.0 == "{\"sales\":2}");
        ensure!(b.get_shared("other").await?.is_none());
        Ok(())
    }

    /// On a server with change streams, an append wakes the watcher; on one without (this
    /// DocumentDB server), the answer is `None` and the server really refuses a change stream.
    pub async fn watch_changes_answers_what_the_server_can(case: &Case) -> Result<()> {
        let cluster = case.cluster()?;
        match cluster.watch_changes().await? {
            Some(mut stream) => {
                cluster.append_changes("a", vec!["wake".into()]).await?;
                tokio::time::timeout(Duration::from_secs(30), stream.next())
                    .await
                    .context("no wake-up after an append")?
                    .context("the stream ended")?;
            }
            None => {
                let db = case.database().await?;
                let refused = db
                    .collection::<bson::Document>("extension_changes")
                    .watch()
                    .await;
                ensure!(refused.is_err(), "the server has change streams after all");
                // The store still answers after the refusal.
                cluster.append_changes("a", vec!["after".into()]).await?;
                ensure!(cluster.change_bounds().await?.is_some());
            }
        }
        Ok(())
    }
}

/// Runs every case on its own database, and fails once at the end with every case that failed.
#[cfg(feature = "mongodb")]
macro_rules! cluster_cases {
    ($($case:ident),* $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn mongodb_cluster() -> Result<()> {
            let Some(uri) = mongo::uri() else { return Ok(()) };
            let mut failures = Vec::new();
            let mut ran = 0;
            $(
                ran += 1;
                let started = std::time::Instant::now();
                let outcome = match mongo::Case::new(&uri, stringify!($case)).await {
                    Ok(case) => {
                        let outcome = cases::$case(&case).await;
                        let cleaned = support::clean_up(|| case.cleanup()).await;
                        outcome.and_then(|()| cleaned.context("dropping its database"))
                    }
                    Err(e) => Err(e),
                };
                println!(
                    "MongoDB cluster case {} {} in {:.2} s",
                    stringify!($case),
                    if outcome.is_ok() { "passed" } else { "FAILED" },
                    started.elapsed().as_secs_f64()
                );
                if let Err(e) = outcome {
                    failures.push(format!("{}: {e:#}", stringify!($case)));
                }
            )*
            let _ = writeln!(
                std::io::stderr(),
                "store cluster tests against MongoDB: {} of {ran} case(s) passed",
                ran - failures.len()
            );
            ensure!(
                failures.is_empty(),
                "{} of {ran} MongoDB cluster case(s) failed:\n{}",
                failures.len(),
                failures.join("\n")
            );
            Ok(())
        }
    };
}

#[cfg(feature = "mongodb")]
cluster_cases!(
    lease_take_renew_release,
    eight_racing_takers_one_wins,
    concurrent_appends_leave_no_hole,
    changes_after_pages_and_bounds,
    an_empty_log_starts_at_the_time_in_micros,
    racing_starts_of_an_empty_log_leave_no_hole,
    only_one_entry_starts_a_log,
    an_append_that_meets_another_continues_after_it,
    a_pruned_log_reads_from_what_is_left,
    ttl_indexes_follow_the_retention,
    commands_are_claimed_once,
    command_results_round_trip,
    shared_documents_round_trip,
    watch_changes_answers_what_the_server_can,
);
