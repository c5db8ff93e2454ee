//! The repository contract, written once: every case runs against the embedded store always,
//! and against MongoDB when `TEST_MONGODB_URI` is set (otherwise one line says it was skipped).
//! Embedded-only behaviour (crash recovery, file locking, bad paths) follows at the end.

mod support;

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use async_trait::async_trait;
use domain::analytics::{TimeInStateQuery, prior_entries, time_in_state};
use domain::callcenter::CallCenterView;
use domain::{
    AgentName, Department, Extension, ExtensionFilter, ExtensionNumber, ExtensionPatch,
    HistoryEntry, HistoryEvent, NewExtension, NoWrite, Observation, Presence, RecordId, TimeRange,
    Timestamp,
};
use domain::{AgentPresence, CallInfo, CallState, QueueMembership};
use store::{Repository, StatusEffect, StoreError, StoreOptions, TimeInStateRequest};

/// A place a backend keeps its data; opening it twice in a row is a restart.
#[async_trait]
trait Backend: Send + Sync {
    async fn open(&self) -> Result<Arc<dyn Repository>>;
}

fn options() -> StoreOptions {
    // Batches are flushed explicitly in these tests; the interval never fires.
    StoreOptions {
        last_seen_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

struct Embedded {
    dir: tempfile::TempDir,
}

impl Embedded {
    fn new() -> Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }
}

#[async_trait]
impl Backend for Embedded {
    async fn open(&self) -> Result<Arc<dyn Repository>> {
        let store = store::EmbeddedStore::open(self.dir.path(), options()).await?;
        Ok(Arc::new(store))
    }
}

fn ext(s: &str) -> ExtensionNumber {
    ExtensionNumber::parse(s).expect("valid extension")
}

fn new_ext(number: &str, name: &str, dept: &str) -> NewExtension {
    NewExtension {
        extension: ext(number),
        agent_name: AgentName::parse(name).expect("valid name"),
        department: Department::parse(dept).expect("valid department"),
        is_active: true,
    }
}

/// A fixed base time in the recent past, so that test observations are newer than nothing
/// and ordered by the offsets the cases choose.
fn t(secs: i64) -> Timestamp {
    let base: Timestamp = "2026-03-01T08:00:00Z".parse().expect("time");
    base + chrono::Duration::milliseconds(secs * 1000)
}

/// The extension and codes of a status entry.
fn status_of(h: &HistoryEntry) -> Option<(&ExtensionNumber, i32, i32)> {
    match &h.event {
        HistoryEvent::Status {
            extension,
            previous_code,
            code,
        } => Some((extension, *previous_code, *code)),
        _ => None,
    }
}

fn entry(at: Timestamp, event: HistoryEvent) -> HistoryEntry {
    HistoryEntry::new(at, event)
}

fn pause(n: &str, queue: &str, reason: Option<&str>) -> HistoryEvent {
    HistoryEvent::Pause {
        extension: ext(n),
        queue: queue.into(),
        paused: reason.is_some(),
        reason: reason.map(str::to_owned),
    }
}

fn numbers(records: &[Extension]) -> Vec<&str> {
    records.iter().map(|r| r.extension.as_str()).collect()
}

mod cases {
    use super::*;

    /// Creates 1001 (A, Sales) and 1002 (B, `second_department`), writes a server start at
    /// `started` and the PBX link up at 1 s, and 1001 reported online (code 0) at 2 s.
    async fn two_agents_come_online(
        repo: &dyn Repository,
        second_department: &str,
        started: Timestamp,
    ) -> Result<()> {
        repo.create(new_ext("1001", "A", "Sales")).await?;
        repo.create(new_ext("1002", "B", second_department)).await?;
        repo.append_history(&[
            entry(started, HistoryEvent::ServerStart),
            entry(t(1), HistoryEvent::PbxLinkUp),
        ])
        .await?;
        repo.apply_status(&ext("1001"), Observation::reported(0, t(2)))
            .await?;
        Ok(())
    }

    pub async fn create_get_and_list(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        ensure!(repo.list(&ExtensionFilter::default()).await?.is_empty());
        let before = domain::now();
        let mut created = Vec::new();
        for n in ["1001", "999", "0101", "20"] {
            created.push(
                repo.create(new_ext(n, &format!("Agent {n}"), "Sales"))
                    .await?,
            );
        }
        let a = &created[0];
        ensure!(a.id.as_str().len() == 24);
        ensure!(a.status_code == -1 && a.status == Presence::Unknown);
        ensure!(a.device_state.as_str() == "UNKNOWN");
        ensure!(a.last_seen.is_none() && a.last_status_change.is_none());
        ensure!(a.created_at == a.updated_at && a.created_at >= before);
        ensure!(repo.get(&a.id).await?.as_ref() == Some(a));
        ensure!(repo.get_by_extension(&ext("1001")).await?.as_ref() == Some(a));
        ensure!(repo.get_by_extension(&ext("1002")).await?.is_none());
        let all = repo.list(&ExtensionFilter::default()).await?;
        ensure!(
            numbers(&all) == ["20", "0101", "999", "1001"],
            "{:?}",
            numbers(&all)
        );
        ensure!(repo.counters().user_edits == 4);
        ensure!(repo.ping().await.is_ok());
        Ok(())
    }

    pub async fn duplicate_extension_is_a_conflict(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let first = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        let err = repo
            .create(new_ext("1001", "Mallory", "Support"))
            .await
            .expect_err("duplicate");
        ensure!(err.is_conflict(), "{err:?}");
        ensure!(matches!(&err, StoreError::Conflict { extension } if extension.as_str() == "1001"));
        ensure!(repo.list(&ExtensionFilter::default()).await? == vec![first]);
        ensure!(repo.counters().user_edits == 1);
        Ok(())
    }

    pub async fn missing_records_are_not_found(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let id = RecordId::parse("0123456789abcdef01234567")?;
        ensure!(repo.get(&id).await?.is_none());
        let patch = ExtensionPatch {
            is_active: Some(false),
            ..Default::default()
        };
        ensure!(
            repo.update(&id, patch)
                .await
                .expect_err("none")
                .is_not_found()
        );
        ensure!(repo.delete(&id).await.expect_err("none").is_not_found());
        let err = repo
            .apply_status(&ext("1001"), Observation::reported(0, t(1)))
            .await
            .expect_err("unknown extension");
        ensure!(err.is_not_found(), "{err:?}");
        Ok(())
    }

    pub async fn updates_change_only_user_fields(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let a = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        repo.apply_status(&a.extension, Observation::reported(1, t(1)))
            .await?;
        let edits = repo.counters().user_edits;

        // An edit that changes nothing writes nothing and keeps updatedAt.
        let same = ExtensionPatch {
            agent_name: Some(AgentName::parse("Alice")?),
            is_active: Some(true),
            ..Default::default()
        };
        let unchanged = repo.update(&a.id, same).await?;
        ensure!(!unchanged.changed, "setting the stored values is no change");
        ensure!(unchanged.record.updated_at == a.updated_at);
        let empty = repo.update(&a.id, ExtensionPatch::default()).await?;
        ensure!(!empty.changed, "an empty edit is no change");
        ensure!(empty.record.updated_at == a.updated_at);
        ensure!(empty.record.agent_name.as_str() == "Alice");
        ensure!(repo.counters().user_edits == edits);

        tokio::time::sleep(Duration::from_millis(5)).await;
        let patch = ExtensionPatch {
            agent_name: Some(AgentName::parse("Alice Smith")?),
            department: Some(Department::parse("Support")?),
            is_active: Some(false),
        };
        let outcome = repo.update(&a.id, patch).await?;
        ensure!(outcome.changed, "a real edit says it changed the record");
        let b2 = outcome.record;
        ensure!(b2.agent_name.as_str() == "Alice Smith");
        ensure!(b2.department.as_str() == "Support" && !b2.is_active);
        ensure!(b2.updated_at > a.updated_at && b2.created_at == a.created_at);
        // The status fields are untouched by the edit.
        ensure!(b2.status_code == 1 && b2.last_status_change == Some(t(1)));
        ensure!(b2.extension == a.extension && b2.id == a.id);
        ensure!(repo.get(&a.id).await?.as_ref() == Some(&b2));
        ensure!(repo.counters().user_edits == edits + 1);
        Ok(())
    }

    pub async fn delete_returns_the_record(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let a = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        let deleted = repo.delete(&a.id).await?;
        ensure!(deleted == a);
        ensure!(repo.get(&a.id).await?.is_none());
        ensure!(repo.get_by_extension(&a.extension).await?.is_none());
        ensure!(repo.delete(&a.id).await.expect_err("gone").is_not_found());
        // The number is free again, under a new id.
        let again = repo.create(new_ext("1001", "Bob", "Sales")).await?;
        ensure!(again.id != a.id);
        Ok(())
    }

    pub async fn list_filters(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        repo.create(new_ext("1001", "A", "Sales")).await?;
        repo.create(new_ext("1002", "B", "Sales")).await?;
        repo.create(new_ext("1003", "C", "Support")).await?;
        let mut inactive = new_ext("1004", "D", "Sales");
        inactive.is_active = false;
        repo.create(inactive).await?;
        repo.apply_status(&ext("1001"), Observation::reported(0, t(1)))
            .await?;
        repo.apply_status(&ext("1003"), Observation::reported(4, t(1)))
            .await?;

        let sales = Some(Department::parse("Sales")?);
        let rows: Vec<(ExtensionFilter, Vec<&str>)> = vec![
            (
                ExtensionFilter::default(),
                vec!["1001", "1002", "1003", "1004"],
            ),
            (
                ExtensionFilter {
                    department: sales.clone(),
                    ..Default::default()
                },
                vec!["1001", "1002", "1004"],
            ),
            (
                ExtensionFilter {
                    status: Some(Presence::Online),
                    ..Default::default()
                },
                vec!["1001"],
            ),
            (
                ExtensionFilter {
                    status: Some(Presence::Offline),
                    ..Default::default()
                },
                vec!["1003"],
            ),
            (
                ExtensionFilter {
                    department: sales.clone(),
                    status: Some(Presence::Unknown),
                    is_active: Some(true),
                },
                vec!["1002"],
            ),
            (
                ExtensionFilter {
                    is_active: Some(false),
                    ..Default::default()
                },
                vec!["1004"],
            ),
            (
                ExtensionFilter {
                    department: Some(Department::parse("sales")?),
                    ..Default::default()
                },
                vec![],
            ),
        ];
        for (filter, want) in rows {
            let got = repo.list(&filter).await?;
            ensure!(numbers(&got) == want, "{filter:?}: {:?}", numbers(&got));
        }
        Ok(())
    }

    pub async fn operator_text_is_stored_as_plain_text(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let odd = repo
            .create(new_ext("1001", "{\"$ne\": \"\"}", "$gt"))
            .await?;
        repo.create(new_ext("1002", "Bob", "Sales")).await?;
        let back = repo.get(&odd.id).await?.context("stored")?;
        ensure!(back.agent_name.as_str() == "{\"$ne\": \"\"}");
        ensure!(back.department.as_str() == "$gt");
        let filter = ExtensionFilter {
            department: Some(Department::parse("$gt")?),
            ..Default::default()
        };
        ensure!(numbers(&repo.list(&filter).await?) == ["1001"]);
        let filter = ExtensionFilter {
            department: Some(Department::parse("{\"$ne\": null}")?),
            ..Default::default()
        };
        ensure!(repo.list(&filter).await?.is_empty());
        let patch = ExtensionPatch {
            department: Some(Department::parse("{\"$set\": {\"status\": \"online\"}}")?),
            ..Default::default()
        };
        let updated = repo.update(&odd.id, patch).await?.record;
        ensure!(updated.department.as_str() == "{\"$set\": {\"status\": \"online\"}}");
        ensure!(updated.status == Presence::Unknown);
        Ok(())
    }

    pub async fn status_change_writes_record_and_history(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let a = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        let out = repo
            .apply_status(&a.extension, Observation::reported(0, t(10)))
            .await?;
        ensure!(out.is_change());
        ensure!(out.effect == StatusEffect::Changed { previous_code: -1 });
        let r = &out.record;
        ensure!(r.status_code == 0 && r.status == Presence::Online);
        ensure!(r.device_state.as_str() == "NOT_INUSE");
        ensure!(r.last_status_change == Some(t(10)) && r.last_seen == Some(t(10)));
        // A status change is not a user edit.
        ensure!(r.updated_at == a.updated_at);
        ensure!(repo.get(&a.id).await?.as_ref() == Some(r));

        let out = repo
            .apply_status(&a.extension, Observation::reported(8, t(11)))
            .await?;
        ensure!(out.effect == StatusEffect::Changed { previous_code: 0 });
        let history = repo.history(Some(&a.extension), t(0), t(100)).await?;
        let got: Vec<(i32, i32, Timestamp)> = history
            .iter()
            .filter_map(|h| status_of(h).map(|(_, p, n)| (p, n, h.at)))
            .collect();
        ensure!(got == [(-1, 0, t(10)), (0, 8, t(11))], "{got:?}");
        ensure!(history.iter().all(|h| h.extension() == Some(&a.extension)));
        let c = repo.counters();
        ensure!(c.status_changes == 2 && c.last_seen_batches == 0);
        Ok(())
    }

    pub async fn same_code_only_refreshes_last_seen(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let a = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        repo.apply_status(&a.extension, Observation::reported(1, t(10)))
            .await?;
        let before = repo.counters();
        let out = repo
            .apply_status(&a.extension, Observation::reported(1, t(12)))
            .await?;
        ensure!(out.effect == StatusEffect::SeenOnly);
        ensure!(out.record.last_status_change == Some(t(10)));
        ensure!(out.record.last_seen == Some(t(12)));
        let after = repo.counters();
        ensure!(after.status_changes == before.status_changes);
        ensure!(after.last_seen_coalesced == before.last_seen_coalesced + 1);
        ensure!(after.last_seen_batches == before.last_seen_batches);
        // Readers see the refresh before it is written...
        let seen = repo.get(&a.id).await?.context("record")?;
        ensure!(seen.last_seen == Some(t(12)), "{seen:?}");
        // ...and one batch writes it.
        repo.flush().await?;
        let flushed = repo.counters();
        ensure!(flushed.last_seen_batches == before.last_seen_batches + 1);
        ensure!(flushed.last_seen_records == before.last_seen_records + 1);
        ensure!(repo.get(&a.id).await?.context("record")?.last_seen == Some(t(12)));
        ensure!(
            repo.history(None, t(0), t(100)).await?.len() == 1,
            "no history for a same-code observation"
        );
        Ok(())
    }

    pub async fn stale_observations_are_ignored(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let a = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        repo.apply_status(&a.extension, Observation::reported(1, t(10)))
            .await?;
        let out = repo
            .apply_status(&a.extension, Observation::reported(4, t(9)))
            .await?;
        ensure!(out.effect == StatusEffect::Ignored(NoWrite::Stale));
        ensure!(out.record.status_code == 1 && out.record.last_seen == Some(t(10)));
        // A pending (not yet written) refresh counts as well.
        repo.touch_last_seen(std::slice::from_ref(&a.extension), t(20))
            .await?;
        let out = repo
            .apply_status(&a.extension, Observation::reported(4, t(15)))
            .await?;
        ensure!(
            out.effect == StatusEffect::Ignored(NoWrite::Stale),
            "{:?}",
            out.effect
        );
        let now = repo.get(&a.id).await?.context("record")?;
        ensure!(now.status_code == 1 && now.last_seen == Some(t(20)));
        ensure!(repo.history(None, t(0), t(100)).await?.len() == 1);
        ensure!(repo.counters().status_changes == 1);
        Ok(())
    }

    pub async fn absent_from_list_becomes_unknown(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let a = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        // Never reported: already unknown.
        let out = repo
            .apply_status(&a.extension, Observation::absent(t(1)))
            .await?;
        ensure!(out.effect == StatusEffect::Ignored(NoWrite::AlreadyUnknown));
        repo.apply_status(&a.extension, Observation::reported(0, t(2)))
            .await?;
        let out = repo
            .apply_status(&a.extension, Observation::absent(t(3)))
            .await?;
        ensure!(out.effect == StatusEffect::Changed { previous_code: 0 });
        ensure!(out.record.status == Presence::Unknown && out.record.status_code == -1);
        ensure!(out.record.last_seen == Some(t(2)), "absent is not seen");
        ensure!(out.record.last_status_change == Some(t(3)));
        Ok(())
    }

    pub async fn history_ranges(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        repo.create(new_ext("1001", "A", "Sales")).await?;
        repo.create(new_ext("1002", "B", "Sales")).await?;
        let steps = [
            ("1001", 0, 10),
            ("1002", 1, 10),
            ("1001", 1, 20),
            ("1002", 4, 30),
            ("1001", 0, 40),
        ];
        for (n, code, at) in steps {
            repo.apply_status(&ext(n), Observation::reported(code, t(at)))
                .await?;
        }
        let all = repo.history(None, t(0), t(100)).await?;
        let got: Vec<(&str, i32, i32)> = all
            .iter()
            .filter_map(status_of)
            .map(|(e, p, n)| (e.as_str(), p, n))
            .collect();
        ensure!(
            got == [
                ("1001", -1, 0),
                ("1002", -1, 1),
                ("1001", 0, 1),
                ("1002", 1, 4),
                ("1001", 1, 0)
            ],
            "{got:?}"
        );
        // Both ends are inclusive.
        let window = repo.history(None, t(20), t(30)).await?;
        ensure!(window.len() == 2 && window[0].at == t(20) && window[1].at == t(30));
        let one = repo.history(Some(&ext("1001")), t(15), t(100)).await?;
        let got: Vec<Timestamp> = one.iter().map(|h| h.at).collect();
        ensure!(got == [t(20), t(40)], "{got:?}");
        ensure!(repo.history(None, t(50), t(100)).await?.is_empty());
        ensure!(repo.history(None, t(100), t(0)).await?.is_empty());
        Ok(())
    }

    pub async fn last_seen_refreshes_are_batched(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let a = repo.create(new_ext("1001", "A", "Sales")).await?;
        let b2 = repo.create(new_ext("1002", "B", "Sales")).await?;
        let both = [a.extension.clone(), b2.extension.clone()];
        let before = repo.counters();
        for i in 0..100 {
            repo.touch_last_seen(&both, t(i)).await?;
        }
        // An older time and an unknown extension change nothing.
        repo.touch_last_seen(&[a.extension.clone(), ext("4242")], t(50))
            .await?;
        ensure!(repo.counters().last_seen_batches == before.last_seen_batches);
        repo.flush().await?;
        let after = repo.counters();
        ensure!(after.last_seen_batches == before.last_seen_batches + 1);
        ensure!(
            after.last_seen_records == before.last_seen_records + 2,
            "{after:?}"
        );
        ensure!(after.status_changes == before.status_changes);
        for id in [&a.id, &b2.id] {
            let r = repo.get(id).await?.context("record")?;
            ensure!(r.last_seen == Some(t(99)), "{r:?}");
            // Refreshing last_seen is not a status change.
            ensure!(r.last_status_change.is_none() && r.status_code == -1);
        }
        // Nothing pending: a flush writes nothing.
        repo.flush().await?;
        ensure!(repo.counters().last_seen_batches == after.last_seen_batches);
        // A refresh older than what is stored does not move last_seen back.
        repo.touch_last_seen(&both[..1], t(5)).await?;
        repo.flush().await?;
        ensure!(repo.get(&a.id).await?.context("record")?.last_seen == Some(t(99)));
        Ok(())
    }

    pub async fn batch_of_observations_applies_in_order(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        repo.create(new_ext("1001", "A", "Sales")).await?;
        repo.create(new_ext("1002", "B", "Sales")).await?;
        let batch = vec![
            (ext("1001"), Observation::reported(0, t(1))),
            (ext("1001"), Observation::reported(1, t(2))),
            (ext("1002"), Observation::reported(2, t(2))),
            (ext("1001"), Observation::reported(1, t(3))),
            (ext("4242"), Observation::reported(1, t(3))),
            (ext("1002"), Observation::reported(0, t(1))),
        ];
        let results = repo.apply_statuses(&batch).await;
        ensure!(results.len() == batch.len());
        let effects: Vec<Option<StatusEffect>> = results
            .iter()
            .map(|r| r.as_ref().ok().map(|o| o.effect.clone()))
            .collect();
        ensure!(
            effects
                == [
                    Some(StatusEffect::Changed { previous_code: -1 }),
                    Some(StatusEffect::Changed { previous_code: 0 }),
                    Some(StatusEffect::Changed { previous_code: -1 }),
                    Some(StatusEffect::SeenOnly),
                    None,
                    Some(StatusEffect::Ignored(NoWrite::Stale)),
                ],
            "{effects:?}"
        );
        ensure!(
            results[4]
                .as_ref()
                .expect_err("unknown extension")
                .is_not_found()
        );
        let r = repo.get_by_extension(&ext("1001")).await?.context("1001")?;
        ensure!(r.status_code == 1 && r.last_seen == Some(t(3)));
        ensure!(repo.history(None, t(0), t(10)).await?.len() == 3);
        Ok(())
    }

    pub async fn concurrent_writers_apply_each_change_once(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        for i in 0..200 {
            repo.create(new_ext(&format!("{}", 2000 + i), "A", "Sales"))
                .await?;
        }
        // Many writers at once, every extension changed by two of them with the same news:
        // exactly one change each, the other sees the same code.
        let mut tasks = Vec::new();
        for _ in 0..2 {
            for i in 0..200 {
                let repo = repo.clone();
                tasks.push(tokio::spawn(async move {
                    let n = ext(&format!("{}", 2000 + i));
                    repo.apply_status(&n, Observation::reported(2, t(5))).await
                }));
            }
        }
        let mut changed = 0;
        let mut seen_only = 0;
        for task in tasks {
            match task.await??.effect {
                StatusEffect::Changed { previous_code: -1 } => changed += 1,
                StatusEffect::SeenOnly => seen_only += 1,
                other => anyhow::bail!("unexpected {other:?}"),
            }
        }
        ensure!(changed == 200 && seen_only == 200, "{changed} {seen_only}");
        ensure!(repo.history(None, t(0), t(10)).await?.len() == 200);
        ensure!(repo.counters().status_changes == 200);
        let online = ExtensionFilter {
            status: Some(Presence::Online),
            ..Default::default()
        };
        ensure!(repo.list(&online).await?.len() == 200);
        Ok(())
    }

    pub async fn flushes_racing_status_changes_keep_the_newest(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        let exts: Vec<ExtensionNumber> = (0..100).map(|i| ext(&format!("{}", 5000 + i))).collect();
        for n in &exts {
            repo.create(new_ext(n.as_str(), "A", "Sales")).await?;
            repo.apply_status(n, Observation::reported(0, t(0))).await?;
        }
        // Each round, all at once and in any order: every extension repeats its current code,
        // the even ones change code one second later, and batches are written meanwhile.
        for round in 1..=5i32 {
            let base = i64::from(round) * 2;
            let mut observations = Vec::new();
            let mut flushes = Vec::new();
            for (i, n) in exts.iter().enumerate() {
                let even = i % 2 == 0;
                let current = if even { round - 1 } else { 0 };
                let mut planned = vec![Observation::reported(current, t(base))];
                if even {
                    planned.push(Observation::reported(round, t(base + 1)));
                }
                for obs in planned {
                    let (repo, n) = (repo.clone(), n.clone());
                    observations.push(tokio::spawn(
                        async move { repo.apply_status(&n, obs).await },
                    ));
                }
                if i % 25 == 0 {
                    let repo = repo.clone();
                    flushes.push(tokio::spawn(async move { repo.flush().await }));
                }
            }
            for task in observations {
                task.await??;
            }
            for task in flushes {
                task.await??;
            }
        }
        repo.flush().await?;
        for (i, n) in exts.iter().enumerate() {
            let r = repo.get_by_extension(n).await?.context("record")?;
            let want = if i % 2 == 0 {
                (5, Some(t(11)), Some(t(11)))
            } else {
                (0, Some(t(0)), Some(t(10)))
            };
            ensure!(
                (r.status_code, r.last_status_change, r.last_seen) == want,
                "{r:?}"
            );
        }
        // What the batches wrote is what a restart reads.
        drop(repo);
        let repo = b.open().await?;
        let r = repo.get_by_extension(&exts[1]).await?.context("record")?;
        ensure!(r.last_seen == Some(t(10)), "{r:?}");
        Ok(())
    }

    pub(super) fn busy_view() -> CallCenterView {
        CallCenterView {
            queues: vec![
                QueueMembership {
                    queue: "sales".into(),
                    paused: true,
                    paused_reason: Some("Lunch {\"$ne\": 1}".into()),
                    paused_since: Some(t(2)),
                    penalty: 2,
                    calls_taken: 7,
                    last_call: Some(t(3)),
                    in_call: true,
                },
                QueueMembership {
                    queue: "support".into(),
                    paused: false,
                    paused_reason: None,
                    paused_since: None,
                    penalty: 0,
                    calls_taken: 0,
                    last_call: None,
                    in_call: false,
                },
            ],
            presence: Some(AgentPresence {
                state: "away".into(),
                subtype: Some("Lunch".into()),
                message: None,
            }),
            call: Some(CallInfo {
                state: CallState::Up,
                peer_number: Some("5551234".into()),
                peer_name: None,
                queue: Some("sales".into()),
                since: t(4),
            }),
        }
    }

    pub async fn call_center_fields_are_written_once_per_change(b: &dyn Backend) -> Result<()> {
        let (a, written) = {
            let repo = b.open().await?;
            let a = repo.create(new_ext("1001", "Alice", "Sales")).await?;
            let a = repo
                .apply_status(&a.extension, Observation::reported(1, t(1)))
                .await?
                .record;
            // A new record holds none: setting none writes nothing.
            let out = repo
                .set_call_center(&a.extension, &CallCenterView::default())
                .await?;
            ensure!(!out.changed && out.record == a, "{out:?}");

            let view = busy_view();
            let out = repo.set_call_center(&a.extension, &view).await?;
            ensure!(out.changed, "{out:?}");
            ensure!(CallCenterView::of(&out.record) == view, "{:?}", out.record);
            // Only the call-center fields move.
            let mut want = a.clone();
            view.apply_to(&mut want);
            ensure!(out.record == want, "{:?} != {want:?}", out.record);
            ensure!(repo.get(&a.id).await?.as_ref() == Some(&want));
            let listed = repo.list(&ExtensionFilter::default()).await?;
            ensure!(listed == [want.clone()], "{listed:?}");

            // The same view again writes nothing.
            let again = repo.set_call_center(&a.extension, &view).await?;
            ensure!(!again.changed && again.record == want, "{again:?}");
            ensure!(repo.counters().call_center_changes == 1);

            // One field changes: one more write.
            let mut ended = view.clone();
            ended.call = None;
            ended.queues[0].in_call = false;
            let out = repo.set_call_center(&a.extension, &ended).await?;
            ensure!(out.changed && CallCenterView::of(&out.record) == ended);
            // The pause's start alone is a change too (a restart learned it from LastPause),
            // and it is stored as given.
            let mut earlier = ended.clone();
            earlier.queues[0].paused_since = Some(t(1));
            let out = repo.set_call_center(&a.extension, &earlier).await?;
            ensure!(
                out.changed && CallCenterView::of(&out.record) == earlier,
                "{out:?}"
            );
            let read = repo.get(&a.id).await?.context("record")?;
            ensure!(read.queues[0].paused_since == Some(t(1)), "{read:?}");

            // Many at once, in order: a change, nothing to change, an unknown extension.
            let b2 = repo.create(new_ext("1002", "Bob", "Sales")).await?;
            let results = repo
                .set_call_centers(&[
                    (a.extension.clone(), view.clone()),
                    (b2.extension.clone(), CallCenterView::default()),
                    (ext("9999"), view.clone()),
                ])
                .await;
            ensure!(results.len() == 3);
            ensure!(
                matches!(&results[0], Ok(o) if o.changed && CallCenterView::of(&o.record) == view)
            );
            ensure!(matches!(&results[1], Ok(o) if !o.changed && o.record == b2));
            ensure!(
                matches!(&results[2], Err(e) if e.is_not_found()),
                "{:?}",
                results[2]
            );
            ensure!(repo.counters().call_center_changes == 4);
            let unknown = repo
                .set_call_center(&ext("9999"), &CallCenterView::default())
                .await;
            ensure!(matches!(unknown, Err(e) if e.is_not_found()));
            // A status change keeps the call-center fields.
            let r = repo
                .apply_status(&a.extension, Observation::reported(0, t(9)))
                .await?
                .record;
            ensure!(CallCenterView::of(&r) == view, "{r:?}");
            (a, r)
        };
        // Acknowledged, so a restart reads it; a deleted and recreated number starts empty.
        let repo = b.open().await?;
        let back = repo.get(&a.id).await?.context("record")?;
        ensure!(back == written, "{back:?} != {written:?}");
        repo.delete(&a.id).await?;
        let again = repo.create(new_ext("1001", "Alice", "Sales")).await?;
        ensure!(CallCenterView::of(&again) == CallCenterView::default());
        let reread = repo.get(&again.id).await?.context("recreated")?;
        ensure!(CallCenterView::of(&reread) == CallCenterView::default());
        Ok(())
    }

    pub async fn acknowledged_writes_survive_a_restart(b: &dyn Backend) -> Result<()> {
        let (kept, gone, changed) = {
            let repo = b.open().await?;
            let kept = repo.create(new_ext("1001", "Alice", "Sales")).await?;
            let gone = repo.create(new_ext("1002", "Bob", "Sales")).await?;
            repo.delete(&gone.id).await?;
            let patch = ExtensionPatch {
                department: Some(Department::parse("Support")?),
                ..Default::default()
            };
            let kept = repo.update(&kept.id, patch).await?.record;
            let changed = repo
                .apply_status(&kept.extension, Observation::reported(2, t(7)))
                .await?
                .record;
            // No flush: dropped as a process that stops would drop it.
            (kept, gone, changed)
        };
        let repo = b.open().await?;
        let back = repo.get(&kept.id).await?.context("kept survives")?;
        ensure!(back.department.as_str() == "Support");
        ensure!(back == changed, "{back:?} != {changed:?}");
        ensure!(repo.get(&gone.id).await?.is_none());
        ensure!(repo.history(None, t(0), t(10)).await?.len() == 1);
        // The reopened store goes on numbering history after what is there.
        repo.apply_status(&kept.extension, Observation::reported(0, t(8)))
            .await?;
        let history = repo.history(None, t(0), t(10)).await?;
        ensure!(history.len() == 2 && history[1].at == t(8));
        Ok(())
    }

    pub async fn history_of_every_kind_round_trips(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        two_agents_come_online(&*repo, "Sales", t(1)).await?;
        let rest = vec![
            entry(t(3), pause("1001", "sales", Some("lunch"))),
            entry(t(3), pause("1001", "support", None)),
            entry(
                t(4),
                HistoryEvent::Presence {
                    extension: ext("1002"),
                    state: "away".into(),
                    subtype: Some("meeting".into()),
                    message: None,
                },
            ),
            entry(
                t(5),
                HistoryEvent::Call {
                    extension: ext("1001"),
                    on_call: true,
                    queue: Some("sales".into()),
                },
            ),
            entry(
                t(6),
                HistoryEvent::Call {
                    extension: ext("1001"),
                    on_call: false,
                    queue: None,
                },
            ),
            entry(t(7), HistoryEvent::PbxLinkDown),
            entry(t(8), HistoryEvent::ServerStop),
        ];
        repo.append_history(&rest).await?;
        repo.append_history(&[]).await?;
        let all = repo.history(None, t(0), t(100)).await?;
        let mut want = vec![
            entry(t(1), HistoryEvent::ServerStart),
            entry(t(1), HistoryEvent::PbxLinkUp),
            entry(
                t(2),
                HistoryEvent::Status {
                    extension: ext("1001"),
                    previous_code: -1,
                    code: 0,
                },
            ),
        ];
        want.extend(rest);
        ensure!(all == want, "{all:#?}");
        // One extension: its own entries and the markers, none of another extension.
        let one = repo.history(Some(&ext("1001")), t(0), t(100)).await?;
        ensure!(one.len() == 9, "{one:#?}");
        ensure!(
            one.iter()
                .all(|e| e.extension().is_none_or(|n| *n == ext("1001")))
        );
        ensure!(one.iter().filter(|e| e.extension().is_none()).count() == 4);
        // Both bounds inclusive; entries of one millisecond in the order written.
        let same = repo.history(None, t(1), t(3)).await?;
        let kinds: Vec<&str> = same.iter().map(|e| e.event.kind()).collect();
        ensure!(
            kinds == ["server_start", "pbx_link_up", "status", "pause", "pause"],
            "{kinds:?}"
        );
        // Durable: a reopened store reads the same.
        drop(repo);
        let repo = b.open().await?;
        ensure!(repo.history(None, t(0), t(100)).await? == want);
        Ok(())
    }

    pub async fn history_window_feeds_time_in_state(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        two_agents_come_online(&*repo, "Support", t(0)).await?;
        repo.apply_status(&ext("1002"), Observation::reported(0, t(2)))
            .await?;
        repo.append_history(&[
            entry(t(3), pause("1001", "sales", Some("lunch"))),
            entry(t(4), pause("1001", "support", Some("admin"))),
            entry(t(5), pause("1001", "support", None)),
        ])
        .await?;
        repo.apply_status(&ext("1001"), Observation::reported(1, t(6)))
            .await?;
        // The window [10 s, 40 s).
        repo.append_history(&[entry(t(12), HistoryEvent::PbxLinkDown)])
            .await?;
        repo.append_history(&[entry(t(15), HistoryEvent::PbxLinkUp)])
            .await?;
        repo.apply_status(&ext("1002"), Observation::reported(1, t(20)))
            .await?;
        repo.append_history(&[entry(t(25), pause("1001", "sales", None))])
            .await?;
        // After it (a clean restart): only the first one is part of the window's answer.
        repo.append_history(&[
            entry(t(40), HistoryEvent::ServerStop),
            entry(t(40), HistoryEvent::ServerStart),
            entry(t(41), HistoryEvent::PbxLinkUp),
        ])
        .await?;

        let range = TimeRange::new(t(10), t(40))?;
        let window = repo.history_window(range).await?;
        let everything = repo.history(None, t(0), t(100)).await?;
        let want_prior = prior_entries(&everything, t(10));
        let mut got_prior = window.prior.clone();
        got_prior.sort_by_key(|e| (e.at, e.event.kind()));
        let mut want_sorted = want_prior.clone();
        want_sorted.sort_by_key(|e| (e.at, e.event.kind()));
        ensure!(
            got_prior == want_sorted,
            "{got_prior:#?}\n!=\n{want_sorted:#?}"
        );
        let kinds: Vec<(&str, Timestamp)> = window
            .entries
            .iter()
            .map(|e| (e.event.kind(), e.at))
            .collect();
        ensure!(
            kinds
                == [
                    ("pbx_link_down", t(12)),
                    ("pbx_link_up", t(15)),
                    ("status", t(20)),
                    ("pause", t(25)),
                    ("server_stop", t(40)),
                ],
            "{kinds:?}"
        );

        // The store's time in state is the pass over the whole history in memory.
        let extensions: std::collections::BTreeMap<ExtensionNumber, Department> = [
            (ext("1001"), Department::parse("Sales")?),
            (ext("1002"), Department::parse("Support")?),
        ]
        .into_iter()
        .collect();
        let now = t(1000);
        let stored = repo
            .time_in_state(TimeInStateRequest {
                range,
                now,
                department: None,
                extensions: extensions.clone(),
            })
            .await?;
        let in_memory = time_in_state(
            &TimeInStateQuery {
                range,
                now,
                department: None,
                extensions: &extensions,
                prior: &want_prior,
            },
            everything.iter().filter(|e| e.at >= t(10)),
        );
        ensure!(stored == in_memory, "{stored:#?}\n!=\n{in_memory:#?}");
        let a = stored.extension("1001").context("1001 reported")?;
        // Paused for lunch from before the window until 25 s, less the outage (12 s to 15 s).
        ensure!(a.paused_ms() == 12_000, "{a:?}");
        ensure!(a.status_ms(Presence::Unknown) == 3_000, "{a:?}");
        ensure!(a.status_ms(Presence::Online) == 27_000, "{a:?}");
        // A window before anything was written is all unknown.
        let early = repo
            .history_window(TimeRange::new(t(-100), t(-50))?)
            .await?;
        ensure!(early.prior.is_empty());
        ensure!(early.entries.len() == 1 && early.entries[0].at == t(0));
        Ok(())
    }

    pub async fn history_is_pruned_in_batches(b: &dyn Backend) -> Result<()> {
        let repo = b.open().await?;
        repo.create(new_ext("1001", "A", "Sales")).await?;
        let entries: Vec<HistoryEntry> = (0..25)
            .map(|i| {
                entry(
                    t(i),
                    if i % 2 == 0 {
                        HistoryEvent::PbxLinkDown
                    } else {
                        HistoryEvent::PbxLinkUp
                    },
                )
            })
            .collect();
        repo.append_history(&entries).await?;
        let mut deleted = Vec::new();
        loop {
            let n = repo.prune_history(t(20), 7).await?;
            deleted.push(n);
            if n < 7 {
                break;
            }
        }
        ensure!(deleted == [7, 7, 6], "{deleted:?}");
        let left = repo.history(None, t(-1), t(100)).await?;
        ensure!(left == entries[20..], "{left:#?}");
        // Writes go on as before, and the next prune finds nothing older.
        repo.apply_status(&ext("1001"), Observation::reported(0, t(30)))
            .await?;
        ensure!(repo.prune_history(t(20), 7).await? == 0);
        ensure!(repo.history(None, t(-1), t(100)).await?.len() == 6);
        Ok(())
    }
}

/// Generates one test per case for the embedded store, and one test that runs every case
/// against MongoDB (or says in one line that it did not).
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded_contract {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> Result<()> {
                    let backend = Embedded::new()?;
                    cases::$case(&backend).await
                }
            )*
        }

        /// Runs every case, each on its own fresh database, and fails once at the end with the
        /// list of every case that failed and why.
        #[cfg(feature = "mongodb")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn mongodb_contract() -> Result<()> {
            let Some(uri) = mongo::uri() else { return Ok(()) };
            let mut failures = Vec::new();
            let mut ran = 0;
            $(
                ran += 1;
                let started = std::time::Instant::now();
                let backend = mongo::Mongo::new(&uri, stringify!($case));
                let outcome = cases::$case(&backend).await;
                let cleaned = support::clean_up(|| backend.cleanup()).await;
                let outcome = outcome.and_then(|()| cleaned.context("dropping its database"));
                println!(
                    "MongoDB case {} {} in {:.2} s",
                    stringify!($case),
                    if outcome.is_ok() { "passed" } else { "FAILED" },
                    started.elapsed().as_secs_f64()
                );
                if let Err(e) = outcome {
                    failures.push(format!("{}: {e:#}", stringify!($case)));
                }
            )*
            mongo::ran(ran, failures.len());
            ensure!(
                failures.is_empty(),
                "{} of {ran} MongoDB contract case(s) failed:\n{}",
                failures.len(),
                failures.join("\n")
            );
            Ok(())
        }
    };
}

contract!(
    create_get_and_list,
    duplicate_extension_is_a_conflict,
    missing_records_are_not_found,
    updates_change_only_user_fields,
    delete_returns_the_record,
    list_filters,
    operator_text_is_stored_as_plain_text,
    status_change_writes_record_and_history,
    same_code_only_refreshes_last_seen,
    stale_observations_are_ignored,
    absent_from_list_becomes_unknown,
    history_ranges,
    last_seen_refreshes_are_batched,
    batch_of_observations_applies_in_order,
    concurrent_writers_apply_each_change_once,
    flushes_racing_status_changes_keep_the_newest,
    acknowledged_writes_survive_a_restart,
    call_center_fields_are_written_once_per_change,
    history_of_every_kind_round_trips,
    history_window_feeds_time_in_state,
    history_is_pruned_in_batches,
);

#[cfg(not(feature = "mongodb"))]
#[test]
fn mongodb_contract() {
    support::skipped("contract", "built without feature `mongodb`");
}

#[cfg(feature = "mongodb")]
mod mongo {
    use super::*;
    use store::{MongoConfig, MongoStore};

    pub fn uri() -> Option<String> {
        support::mongodb_uri("contract")
    }

    /// Says, on the terminal, how the run went, so a pass against a real server is visible too.
    pub fn ran(cases: usize, failed: usize) {
        let _ = writeln!(
            std::io::stderr(),
            "store contract tests against MongoDB: {} of {cases} case(s) passed",
            cases - failed
        );
    }

    /// A throw-away database per case.
    pub struct Mongo {
        config: MongoConfig,
    }

    impl Mongo {
        pub fn new(uri: &str, case: &str) -> Self {
            Self {
                config: MongoConfig::new(uri, support::throwaway_database("extstatus_test", case)),
            }
        }

        pub async fn cleanup(&self) -> Result<()> {
            let store = MongoStore::connect(&self.config, options()).await?;
            store.drop_collections().await?;
            Ok(())
        }
    }

    /// Needs no server: nothing listens on port 1 of the loopback address.
    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_with_the_cause() -> Result<()> {
        let mut config = MongoConfig::new("mongodb://127.0.0.1:1/", "call_center");
        config.server_selection_timeout = Duration::from_millis(300);
        let err = MongoStore::connect(&config, options())
            .await
            .expect_err("nothing listens there");
        ensure!(err.is_transient(), "{err:?}");
        ensure!(matches!(&err, StoreError::Unavailable { .. }), "{err:?}");
        let cause = std::error::Error::source(&err)
            .context("a cause")?
            .to_string();
        ensure!(cause.contains("127.0.0.1:1"), "{cause}");
        Ok(())
    }

    /// What `seeder --dry-run` reads through: `find` only, so a database that has no records
    /// yet is left without a collection or an index.
    #[tokio::test]
    async fn read_records_creates_no_collection() -> Result<()> {
        let Some(uri) = uri() else {
            return Ok(());
        };
        let name = support::throwaway_database("extstatus_test", "read_records");
        let config = MongoConfig::new(&uri, &name);
        ensure!(MongoStore::read_records(&config).await?.is_empty());
        let client = mongodb::Client::with_uri_str(&uri).await?;
        let collections = client.database(&name).list_collection_names().await?;
        ensure!(collections.is_empty(), "{collections:?}");
        let store = MongoStore::connect(&config, options()).await?;
        let result = async {
            store.create(new_ext("2002", "Bob", "Support")).await?;
            store.create(new_ext("1001", "Alice", "Sales")).await?;
            let read = MongoStore::read_records(&config).await?;
            ensure!(read == store.list(&ExtensionFilter::default()).await?);
            ensure!(read.len() == 2 && read[0].extension.as_str() == "1001");
            Ok(())
        }
        .await;
        support::clean_up(|| async { Ok(store.drop_collections().await?) }).await?;
        result
    }

    #[tokio::test]
    async fn a_malformed_uri_is_named_without_its_password() -> Result<()> {
        let config = MongoConfig::new("mongodb://app:hunter2@/call_center?bogus=", "call_center");
        let err = MongoStore::connect(&config, options())
            .await
            .expect_err("malformed");
        ensure!(matches!(&err, StoreError::InvalidConfig { .. }), "{err:?}");
        let text = err.to_string();
        ensure!(!text.contains("hunter2"), "{text}");
        ensure!(text.contains("mongodb://app:***@"), "{text}");
        Ok(())
    }

    #[async_trait]
    impl Backend for Mongo {
        async fn open(&self) -> Result<Arc<dyn Repository>> {
            Ok(Arc::new(
                MongoStore::connect(&self.config, options()).await?,
            ))
        }
    }
}

/// Behaviour only the embedded store has: a file, a lock, a crash.
mod embedded {
    use super::*;
    use store::{DB_FILE_NAME, EmbeddedStore};

    const CRASH_CHILD: &str = "STORE_TEST_CRASH_CHILD_DIR";

    /// Runs twice: the parent starts this same test in a child process, which writes, is
    /// answered, and is then killed without any shutdown; the parent reopens the file and finds
    /// every acknowledged user edit, and the status changes committed before the last of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_loses_nothing_acknowledged() -> Result<()> {
        if let Ok(dir) = std::env::var(CRASH_CHILD) {
            let store = EmbeddedStore::open(&dir, options()).await?;
            let victim = store.create(new_ext("3019", "Agent", "Sales")).await?;
            store.delete(&victim.id).await?;
            create_and_report_busy(&store, 3000, 19).await?;
            // Status commits are soft (no fsync of their own); the durable commit of the next
            // user edit persists them with it.
            let first = store
                .get_by_extension(&ext("3000"))
                .await?
                .context("3000")?;
            let patch = ExtensionPatch {
                agent_name: Some(AgentName::parse("Renamed")?),
                ..Default::default()
            };
            store.update(&first.id, patch).await?;
            // Everything above was answered; pending last_seen refreshes are not flushed.
            store.touch_last_seen(&[ext("3001")], t(50)).await?;
            say_and_wait_to_be_killed("acknowledged")?;
        }

        let dir = tempfile::tempdir()?;
        run_and_kill(
            "embedded::a_crash_loses_nothing_acknowledged",
            CRASH_CHILD,
            dir.path(),
        )
        .await?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let all = store.list(&ExtensionFilter::default()).await?;
        ensure!(all.len() == 19, "{}", all.len());
        ensure!(all[0].agent_name.as_str() == "Renamed");
        ensure!(all.iter().all(|r| r.status_code == 1));
        ensure!(store.get_by_extension(&ext("3019")).await?.is_none());
        ensure!(store.history(None, t(0), t(100)).await?.len() == 19);
        Ok(())
    }

    /// Creates `n` records from extension `first` on and reports each of them busy, at `t(i)`
    /// for the `i`-th.
    async fn create_and_report_busy(store: &EmbeddedStore, first: u32, n: u32) -> Result<()> {
        for i in 0..n {
            store
                .create(new_ext(&format!("{}", first + i), "Agent", "Sales"))
                .await?;
        }
        let batch: Vec<_> = (0..n)
            .map(|i| {
                (
                    ext(&format!("{}", first + i)),
                    Observation::reported(1, t(i64::from(i))),
                )
            })
            .collect();
        for r in store.apply_statuses(&batch).await {
            r?;
        }
        Ok(())
    }

    /// For a child process: prints `marker` for the parent, then waits to be killed (holding
    /// whatever it has open). The two-minute bound keeps a stray child from living forever.
    fn say_and_wait_to_be_killed(marker: &str) -> Result<()> {
        let mut out = std::io::stdout();
        writeln!(out, "{marker}")?;
        out.flush()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            std::thread::park_timeout(left);
        }
        anyhow::bail!("the child was not killed within two minutes")
    }

    /// Starts the test `name` of this binary in a child process with `env` set to `dir`, and
    /// waits until it prints `marker`. A child that ends before is reported with its stderr.
    fn spawn_child(
        name: &str,
        env: &str,
        dir: &std::path::Path,
        marker: &str,
    ) -> Result<std::process::Child> {
        use std::io::{BufRead as _, Read as _};
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(env, dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let said = std::io::BufReader::new(stdout)
            .lines()
            .any(|line| line.is_ok_and(|l| l.contains(marker)));
        if !said {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            anyhow::bail!("the child ended before it said {marker:?}: {stderr}");
        }
        Ok(child)
    }

    /// Runs the test `name` in a child process with `env` set to `dir`, waits until it prints
    /// `acknowledged`, and kills it with SIGKILL: no destructor, no flush, no clean close.
    async fn run_and_kill(
        name: &'static str,
        env: &'static str,
        dir: &std::path::Path,
    ) -> Result<()> {
        let path = dir.to_path_buf();
        let (status, stderr) = tokio::task::spawn_blocking(move || -> Result<_> {
            use std::io::Read as _;
            let mut child = spawn_child(name, env, &path, "acknowledged")?;
            child.kill()?;
            let status = child.wait()?;
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .context("stderr")?
                .read_to_string(&mut stderr)?;
            Ok((status, stderr))
        })
        .await??;
        use std::os::unix::process::ExitStatusExt as _;
        ensure!(
            status.signal() == Some(9),
            "the child should have been killed: {status:?} {stderr}"
        );
        Ok(())
    }

    const SOFT_CHILD: &str = "STORE_TEST_SOFT_CHILD_DIR";

    /// Status changes alone commit without an fsync, and the writer makes them durable within
    /// a second by itself: a child that only applies statuses, waits well past that and is
    /// killed loses none of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soft_statuses_become_durable_on_their_own() -> Result<()> {
        if let Ok(dir) = std::env::var(SOFT_CHILD) {
            let store = EmbeddedStore::open(&dir, options()).await?;
            create_and_report_busy(&store, 3100, 5).await?;
            // Twice the writer's one-second bound, then killed.
            std::thread::sleep(std::time::Duration::from_millis(2500));
            say_and_wait_to_be_killed("acknowledged")?;
        }
        let dir = tempfile::tempdir()?;
        run_and_kill(
            "embedded::soft_statuses_become_durable_on_their_own",
            SOFT_CHILD,
            dir.path(),
        )
        .await?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let all = store.list(&ExtensionFilter::default()).await?;
        ensure!(all.len() == 5, "{}", all.len());
        ensure!(all.iter().all(|r| r.status_code == 1), "{all:?}");
        ensure!(store.history(None, t(0), t(100)).await?.len() == 5);
        Ok(())
    }

    /// What costs an fsync: a user edit does; status changes alone do not; a health ping does
    /// only when no durable commit succeeded in the last 2 s (so a status stream pays one
    /// fsync a second, not one more for the probe).
    #[tokio::test]
    async fn statuses_and_covered_pings_make_no_durable_commit() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let durable = || store.counters().durable_commits;
        let before = durable();
        store.create(new_ext("3200", "Agent", "Sales")).await?;
        let edited = std::time::Instant::now();
        ensure!(durable() == before + 1, "a user edit is durable");
        let after_edit = durable();
        store
            .apply_status(&ext("3200"), Observation::reported(1, t(1)))
            .await?;
        store.ping().await?;
        // The ping is covered only within 2 s of the edit: on a machine that stalled longer
        // there is nothing to check here.
        if edited.elapsed() < Duration::from_millis(1_500) {
            ensure!(
                durable() == after_edit,
                "a status and a ping right after a durable commit: {} durable commits",
                durable() - after_edit
            );
        }
        // Past the window, a ping proves the disk again. (The soft status above may have been
        // made durable meanwhile, which starts the window anew: wait past that one too.)
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let idle = durable();
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        ensure!(durable() == idle, "nothing was waiting to be made durable");
        store.ping().await?;
        ensure!(
            durable() == idle + 1,
            "a ping 2 s after the last durable commit"
        );
        Ok(())
    }

    /// Status changes are answered before they are written, and a stream of them shares
    /// commits: 200 single changes, each awaited, take far fewer than 200 commits. What was
    /// answered is readable at once, a history read finds every entry (it waits for them to
    /// be written), and a store opened again afterwards holds them all.
    #[tokio::test]
    async fn single_status_changes_share_commits_and_are_all_kept() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let created = store.create(new_ext("3300", "Agent", "Sales")).await?;
        let commits = || store.counters().commits;
        let before = commits();
        for i in 1..=200 {
            let outcome = store
                .apply_status(&ext("3300"), Observation::reported(i % 2, t(i64::from(i))))
                .await?;
            ensure!(outcome.is_change(), "change {i}: {outcome:?}");
            let shown = store.get(&created.id).await?.context("3300")?;
            ensure!(
                shown.status_code == i % 2,
                "change {i} is read back at once"
            );
        }
        let during = commits() - before;
        ensure!(
            during < 100,
            "200 single status changes took {during} commits: they should share them"
        );
        let history = store.history(Some(&ext("3300")), t(0), t(300)).await?;
        ensure!(history.len() == 200, "{} history entries", history.len());
        drop(store);
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let kept = store
            .get(&created.id)
            .await?
            .context("3300 after reopening")?;
        ensure!(kept.status_code == 0 && kept.last_status_change == Some(t(200)));
        ensure!(store.history(Some(&ext("3300")), t(0), t(300)).await?.len() == 200);
        Ok(())
    }

    /// A status change taken while the writer thread is idle is decided on the caller's
    /// thread; the thread still writes it to the file and makes it durable by itself, with no
    /// further call to wake it (it is told that its next timer moved).
    #[tokio::test]
    async fn a_status_taken_while_the_writer_is_idle_still_reaches_the_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        store.create(new_ext("3500", "Agent", "Sales")).await?;
        // Let the thread finish with the create and go back to waiting for work.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = store.counters();
        store
            .apply_status(&ext("3500"), Observation::reported(1, t(1)))
            .await?;
        // No other call from here on: only the thread's own timers can write it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = store.counters();
            if now.commits > before.commits && now.durable_commits > before.durable_commits {
                break;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "the status was neither written nor made durable within 10 s: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Call-center views are the PBX's state like statuses (its lists re-derive them after
    /// every reconnect): they cost no fsync, share commits with the statuses, their history is
    /// read back at once, and a store opened again holds them. One whose record is deleted
    /// before it was written leaves no row.
    #[tokio::test]
    async fn call_center_views_are_soft_and_kept() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let kept = store.create(new_ext("3700", "Agent", "Sales")).await?;
        let gone = store.create(new_ext("3701", "Agent", "Sales")).await?;
        let before = store.counters();
        let view = cases::busy_view();
        for number in ["3700", "3701"] {
            ensure!(store.set_call_center(&ext(number), &view).await?.changed);
        }
        let after = store.counters();
        ensure!(
            after.durable_commits == before.durable_commits,
            "a call-center view made a durable commit"
        );
        ensure!(after.call_center_changes == before.call_center_changes + 2);
        let history = store
            .history(Some(&ext("3700")), t(0), domain::now())
            .await?;
        ensure!(!history.is_empty(), "no history for the call-center change");
        store.delete(&gone.id).await?;
        drop(store);
        {
            use redb::{ReadableDatabase as _, ReadableTableMetadata as _};
            let db = redb::Database::open(dir.path().join(DB_FILE_NAME))?;
            let txn = db.begin_read()?;
            let rows: redb::TableDefinition<'_, &str, &[u8]> =
                redb::TableDefinition::new("callcenter");
            let rows = txn.open_table(rows)?;
            ensure!(rows.len()? == 1, "{} call-center rows", rows.len()?);
        }
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let all = store.list(&ExtensionFilter::default()).await?;
        ensure!(all.len() == 1 && all[0].id == kept.id, "{all:?}");
        ensure!(CallCenterView::of(&all[0]) == view, "{:?}", all[0]);
        Ok(())
    }

    /// A status decided on the caller's thread never overtakes what was sent to the writer
    /// before it: a status right behind the create of its record finds the record.
    #[tokio::test]
    async fn a_status_right_behind_a_queued_create_finds_its_record() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        for i in 0..20 {
            let number = format!("{}", 3600 + i);
            let extension = ext(&number);
            // `join!` polls the create first, which sends it before the status is tried.
            let (created, status) = tokio::join!(
                store.create(new_ext(&number, "Agent", "Sales")),
                store.apply_status(&extension, Observation::reported(1, t(1)))
            );
            created?;
            ensure!(
                status?.is_change(),
                "{number}: the status must find its record"
            );
        }
        Ok(())
    }

    /// A status change not yet written when a user edit of the same record commits is written
    /// with it (the edit's row and the status row both kept); one whose record is deleted
    /// leaves no row behind (its history entry stays).
    #[tokio::test]
    async fn unwritten_statuses_meet_edits_and_deletes_of_their_record() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let kept = store.create(new_ext("3400", "Agent", "Sales")).await?;
        let gone = store.create(new_ext("3401", "Agent", "Sales")).await?;
        for r in store
            .apply_statuses(&[
                (ext("3400"), Observation::reported(1, t(1))),
                (ext("3401"), Observation::reported(8, t(1))),
            ])
            .await
        {
            ensure!(r?.is_change());
        }
        let patch = ExtensionPatch {
            agent_name: Some(AgentName::parse("Renamed")?),
            ..Default::default()
        };
        // Both go in one durable commit with the unwritten statuses (the writer is idle, so
        // these are the first writes after the statuses were answered).
        let (updated, deleted) =
            tokio::join!(store.update(&kept.id, patch), store.delete(&gone.id));
        updated?;
        deleted?;
        drop(store);
        // The file itself: one status row, the kept record's.
        {
            use redb::{ReadableDatabase as _, ReadableTableMetadata as _};
            let db = redb::Database::open(dir.path().join(DB_FILE_NAME))?;
            let txn = db.begin_read()?;
            let status: redb::TableDefinition<'_, &str, (i32, i64, i64)> =
                redb::TableDefinition::new("status");
            let rows = txn.open_table(status)?;
            ensure!(rows.len()? == 1, "{} status rows", rows.len()?);
            ensure!(
                rows.get(kept.id.as_str())?
                    .is_some_and(|r| r.value().0 == 1)
            );
        }
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let all = store.list(&ExtensionFilter::default()).await?;
        ensure!(all.len() == 1, "{all:?}");
        ensure!(all[0].agent_name.as_str() == "Renamed" && all[0].status_code == 1);
        ensure!(store.history(None, t(0), t(10)).await?.len() == 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_file_in_use_is_locked_and_named() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let first = EmbeddedStore::open(dir.path(), options()).await?;
        let err = EmbeddedStore::open(dir.path(), options())
            .await
            .expect_err("second open");
        is_locked_and_named(&err, dir.path())?;
        // Once the first store is gone the file opens again.
        drop(first);
        EmbeddedStore::open(dir.path(), options()).await?;
        Ok(())
    }

    /// The open was refused as `Locked` (not transient), and the error names the file of
    /// `dir`, says whose it is, and what to use for several instances.
    fn is_locked_and_named(err: &StoreError, dir: &std::path::Path) -> Result<()> {
        let file = dir.join(DB_FILE_NAME);
        ensure!(
            matches!(err, StoreError::Locked { path } if *path == file),
            "{err:?}"
        );
        ensure!(!err.is_transient());
        let text = err.to_string();
        for part in [
            &file.display().to_string(),
            "already open in another process",
            "an embedded store belongs to one api-server",
            "several api-server instances need MongoDB",
            "--mongodb-uri",
        ] {
            ensure!(text.contains(part), "{part:?} missing from: {text}");
        }
        Ok(())
    }

    const HOLD_CHILD: &str = "STORE_TEST_HOLD_CHILD_DIR";

    /// Runs twice: the child process opens the store and keeps it open until it is killed;
    /// meanwhile the parent's open must fail with `Locked` naming the file, and once the child
    /// is gone the file opens again (the operating system dropped the child's lock).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_held_by_another_process_is_locked_and_named() -> Result<()> {
        if let Ok(dir) = std::env::var(HOLD_CHILD) {
            let _store = EmbeddedStore::open(&dir, options()).await?;
            say_and_wait_to_be_killed("holding")?;
        }
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_path_buf();
        let mut child = tokio::task::spawn_blocking(move || {
            spawn_child(
                "embedded::a_file_held_by_another_process_is_locked_and_named",
                HOLD_CHILD,
                &path,
                "holding",
            )
        })
        .await??;
        // It fails at once rather than waiting for the lock; the bound only catches a hang.
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            EmbeddedStore::open(dir.path(), options()),
        )
        .await;
        child.kill()?;
        child.wait()?;
        let err = err
            .context("the open waited for the child's lock")?
            .expect_err("the file is held by the child");
        is_locked_and_named(&err, dir.path())?;
        EmbeddedStore::open(dir.path(), options()).await?;
        Ok(())
    }

    #[tokio::test]
    async fn an_unusable_directory_is_named() -> Result<()> {
        // A path below a regular file can never be created, even by root.
        let file = tempfile::NamedTempFile::new()?;
        let dir = file.path().join("data");
        let err = EmbeddedStore::open(&dir, options())
            .await
            .expect_err("not a directory");
        ensure!(
            matches!(&err, StoreError::InvalidPath { path, .. } if *path == dir),
            "{err:?}"
        );
        ensure!(
            err.to_string()
                .starts_with(&format!("cannot use {}: ", dir.display())),
            "{err}"
        );
        Ok(())
    }

    /// A history entry the compact format cannot hold (a string over 64 KiB) is dropped, and
    /// the commit it shares with other entries still writes them.
    #[tokio::test]
    async fn an_entry_that_cannot_be_encoded_never_fails_the_commit() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = EmbeddedStore::open(dir.path(), options()).await?;
        let huge = HistoryEvent::Presence {
            extension: ext("1001"),
            state: "away".into(),
            subtype: None,
            message: Some("x".repeat(70_000)),
        };
        store
            .append_history(&[
                entry(t(1), HistoryEvent::PbxLinkUp),
                entry(t(2), huge),
                entry(t(3), pause("1001", "sales", Some("lunch"))),
            ])
            .await?;
        let kinds: Vec<&str> = store
            .history(None, t(0), t(10))
            .await?
            .iter()
            .map(|e| e.event.kind())
            .collect();
        ensure!(kinds == ["pbx_link_up", "pause"], "{kinds:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_named() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join(DB_FILE_NAME);
        std::fs::write(&file, vec![0x5a; 8192])?;
        let err = EmbeddedStore::open(dir.path(), options())
            .await
            .expect_err("garbage");
        ensure!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        // The database file being a directory is just as clear.
        let dir2 = tempfile::tempdir()?;
        std::fs::create_dir(dir2.path().join(DB_FILE_NAME))?;
        let err = EmbeddedStore::open(dir2.path(), options())
            .await
            .expect_err("a directory");
        ensure!(
            matches!(&err, StoreError::InvalidPath { path, .. } if path.ends_with(DB_FILE_NAME)),
            "{err:?}"
        );
        Ok(())
    }

    /// What `seeder --dry-run` reads through: nothing is created for a store that does not
    /// exist, an existing file is read without a byte of it changing, and a file held open by
    /// a running store is refused as `Locked`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_records_creates_and_changes_nothing() -> Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("data");
        ensure!(EmbeddedStore::read_records(&dir).await?.is_empty());
        ensure!(!dir.exists(), "the data directory was created");
        std::fs::create_dir(&dir)?;
        ensure!(EmbeddedStore::read_records(&dir).await?.is_empty());
        ensure!(
            !dir.join(DB_FILE_NAME).exists(),
            "the store file was created"
        );

        let store = EmbeddedStore::open(&dir, options()).await?;
        store.create(new_ext("2002", "Bob", "Support")).await?;
        store.create(new_ext("1001", "Alice", "Sales")).await?;
        let err = EmbeddedStore::read_records(&dir)
            .await
            .expect_err("held by the open store");
        ensure!(
            matches!(&err, StoreError::Locked { path } if *path == dir.join(DB_FILE_NAME)),
            "{err:?}"
        );
        let listed = store.list(&ExtensionFilter::default()).await?;
        store.flush().await?;
        drop(store);

        let file = dir.join(DB_FILE_NAME);
        let before = (std::fs::read(&file)?, std::fs::metadata(&file)?.modified()?);
        let read = EmbeddedStore::read_records(&dir).await?;
        ensure!(read == listed, "{read:?}");
        ensure!(read[0].extension.as_str() == "1001", "in extension order");
        let after = (std::fs::read(&file)?, std::fs::metadata(&file)?.modified()?);
        ensure!(before == after, "reading changed the file");
        Ok(())
    }
}
