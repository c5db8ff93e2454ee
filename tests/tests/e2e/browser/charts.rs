//! The dashboard's charts in a real browser: the department comparison and one agent's day,
//! on a history scripted into the store before the server starts, whose answer is known to the
//! second. The browser's time zone is set so that its local time is around noon, so "today"
//! (local midnight to now) holds the whole scripted hour whenever the test runs.
//!
//! `EXTSTATUS_CHARTS_SCREENSHOT=FILE.png` saves a picture of the page with the agent's chart
//! open.

use std::time::Duration;

use anyhow::Context as _;
use domain::callcenter::CallCenterView;
use domain::{
    CallInfo, CallState, Department, ExtensionNumber, HistoryEntry, HistoryEvent, NewExtension,
    Observation, QueueMembership, Timestamp,
};
use serde_json::{Value, json};
use tests::server::{Options, PATIENCE, TestServer, open_store};

use super::webdriver::Browser;
use super::{one_browser, wait_for};

/// The people of the test: (extension, agent, department).
const PEOPLE: &[(&str, &str, &str)] = &[
    ("1001", "Alice Martin", "Sales"),
    ("1002", "Bob Chen", "Sales"),
    ("2001", "Dmitri Ivanov", "Support"),
    ("2002", "Eve Okafor", "Support"),
];

/// The scripted hour ends this long after it starts; the server stops there, so everything
/// after it is unknown and the known seconds below never change while the test runs.
const KNOWN_S: i64 = 3300;

fn ext(n: &str) -> ExtensionNumber {
    ExtensionNumber::parse(n).expect("extension")
}

fn status(at: Timestamp, n: &str, code: i32) -> HistoryEntry {
    HistoryEntry::new(
        at,
        HistoryEvent::Status {
            extension: ext(n),
            previous_code: -1,
            code,
        },
    )
}

fn pause(at: Timestamp, n: &str, queue: &str, reason: Option<&str>) -> HistoryEntry {
    HistoryEntry::new(
        at,
        HistoryEvent::Pause {
            extension: ext(n),
            queue: queue.to_owned(),
            paused: reason.is_some(),
            reason: reason.map(str::to_owned),
        },
    )
}

fn call(at: Timestamp, n: &str, on_call: bool) -> HistoryEntry {
    HistoryEntry::new(
        at,
        HistoryEvent::Call {
            extension: ext(n),
            on_call,
            queue: None,
        },
    )
}

/// The hour, from `t0` (whole seconds), with what each agent did:
/// * 1001: idle 10 min, on a call 15 min, idle 5 min, paused (lunch) 10 min, idle 10 min,
///   unavailable 5 min: available 25:00, on calls 15:00, paused 10:00, unavailable 05:00;
/// * 1002: idle throughout: available 55:00;
/// * 2001: idle 15 min, paused (training) 30 min, idle 10 min: available 25:00, paused 30:00;
/// * 2002: no state for 20 min (unknown), then unavailable 35 min.
fn timeline(t0: Timestamp) -> Vec<HistoryEntry> {
    let at = |s: i64| t0 + Duration::from_secs(s.unsigned_abs());
    vec![
        HistoryEntry::new(at(0), HistoryEvent::ServerStart),
        HistoryEntry::new(at(0), HistoryEvent::PbxLinkUp),
        status(at(0), "1001", 0),
        status(at(0), "1002", 0),
        status(at(0), "2001", 0),
        call(at(600), "1001", true),
        status(at(600), "1001", 1),
        pause(at(900), "2001", "support", Some("training")),
        status(at(1200), "2002", 4),
        call(at(1500), "1001", false),
        status(at(1500), "1001", 0),
        pause(at(1800), "1001", "sales", Some("lunch")),
        pause(at(2400), "1001", "sales", None),
        pause(at(2700), "2001", "support", None),
        status(at(3000), "1001", 4),
        HistoryEntry::new(at(KNOWN_S), HistoryEvent::ServerStop),
    ]
}

/// A time zone in which it is between 12:00 and 13:00 now, so local midnight is hours back.
fn noon_zone(now: Timestamp) -> String {
    let offset = 12 - now.timestamp().div_euclid(3600).rem_euclid(24);
    // `Etc/GMT-N` is N hours east of UTC (the sign is POSIX's, the other way round).
    if offset >= 0 {
        format!("Etc/GMT-{offset}")
    } else {
        format!("Etc/GMT+{}", -offset)
    }
}

/// Writes the records, the scripted history and the state right now into a fresh store.
async fn seeded_store(t0: Timestamp) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let (store, token) = open_store(dir.path()).await?;
    for (n, name, dept) in PEOPLE {
        store
            .create(NewExtension {
                extension: ext(n),
                agent_name: domain::AgentName::parse(name)?,
                department: Department::parse(dept)?,
                is_active: true,
            })
            .await?;
    }
    store.append_history(&timeline(t0)).await?;
    // Right now (after the scripted hour, while the server is not running): Alice idle, Bob on
    // a call, Dmitri idle but paused, Eve unavailable. These writes add history entries of
    // their own, at a time that counts as unknown (the server stopped at t0 + KNOWN_S).
    let now = domain::now();
    for (n, code) in [("1001", 0), ("1002", 1), ("2001", 0), ("2002", 4)] {
        store
            .apply_status(&ext(n), Observation::reported(code, now))
            .await?;
    }
    let bob = CallCenterView {
        queues: Vec::new(),
        presence: None,
        call: Some(CallInfo {
            state: CallState::Up,
            peer_number: Some("5551234".to_owned()),
            peer_name: None,
            queue: None,
            since: now,
        }),
    };
    store.set_call_center(&ext("1002"), &bob).await?;
    let dmitri = CallCenterView {
        queues: vec![QueueMembership {
            queue: "support".to_owned(),
            paused: true,
            paused_reason: Some("training".to_owned()),
            paused_since: Some(now),
            penalty: 0,
            calls_taken: 0,
            last_call: None,
            in_call: false,
        }],
        presence: None,
        call: None,
    };
    store.set_call_center(&ext("2001"), &dmitri).await?;
    store.flush().await?;
    token.cancel();
    Ok(dir)
}

/// Reads one chart box (`.chart-box`): per segment key, the legend's duration, and the
/// segment's share as written and as drawn (its width over the bar's).
const READ_CHART: &str = "
    const read = (box) => {
      const svg = box.querySelector('svg.bar');
      const barW = svg.getBoundingClientRect().width;
      const out = { label: svg.getAttribute('aria-label') };
      for (const li of box.querySelectorAll('.legend li')) {
        const rect = svg.querySelector(`rect[data-key=\"${li.dataset.key}\"]`);
        out[li.dataset.key] = {
          dur: li.querySelector('.ldur').textContent,
          pct: li.querySelector('.lpct').textContent,
          share: rect ? Number(rect.dataset.share) : 0,
          drawn: rect ? rect.getBoundingClientRect().width / barW : 0,
        };
      }
      return out;
    };";

fn seconds_of(hms: &Value) -> i64 {
    let text = hms.as_str().unwrap_or_default();
    let parts: Vec<i64> = text.split(':').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => -1,
    }
}

/// Checks the known seconds of one chart exactly, and that every segment is drawn with the
/// share of the time its numbers say (the unknown part grows while the test runs, so the
/// total is read from the chart itself).
fn check_chart(what: &str, chart: &Value, known: &[(&str, i64)]) {
    for (key, want) in known {
        assert_eq!(
            seconds_of(&chart[key]["dur"]),
            *want,
            "{what}: {key} in {chart}"
        );
    }
    let keys: Vec<&String> = chart
        .as_object()
        .map(|o| o.keys().filter(|k| *k != "label").collect())
        .unwrap_or_default();
    let total: i64 = keys
        .iter()
        .map(|k| seconds_of(&chart[k.as_str()]["dur"]))
        .sum();
    assert!(total > 0, "{what}: {chart}");
    for k in keys {
        let v = &chart[k.as_str()];
        let want = seconds_of(&v["dur"]) as f64 / total as f64;
        let share = v["share"].as_f64().unwrap_or(-1.0);
        let drawn = v["drawn"].as_f64().unwrap_or(-1.0);
        // Whole seconds against milliseconds: a second or two of the total either way.
        assert!(
            (share - want).abs() < 1e-3,
            "{what}: {k} share {share}, want {want}: {chart}"
        );
        assert!(
            (drawn - want).abs() < 0.01,
            "{what}: {k} drawn {drawn}, want {want}: {chart}"
        );
    }
    // The accessible label says the same numbers.
    let label = chart["label"].as_str().unwrap_or_default();
    for (key, _) in known {
        let dur = chart[key]["dur"].as_str().unwrap_or("?");
        assert!(label.contains(dur), "{what}: {key} {dur} not in {label:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_show_the_known_times_of_a_scripted_day() -> anyhow::Result<()> {
    let _one = one_browser().await?;
    let now = domain::now();
    // The hour ended five minutes ago; whole seconds, so every figure is whole seconds.
    let t0 =
        Timestamp::from_timestamp(now.timestamp() - KNOWN_S - 300, 0).context("a time of today")?;
    let dir = seeded_store(t0).await?;
    let server = TestServer::start_in(Options::default(), dir).await?;

    let b = Browser::start().await?;
    let zone = noon_zone(now);
    b.cdp(
        "Emulation.setTimezoneOverride",
        json!({ "timezoneId": zone }),
    )
    .await
    .with_context(|| format!("setting the time zone {zone}"))?;
    b.goto(&server.url("/?analytics=1000")).await?;

    // The comparison: both departments, with what is true now and today's bars.
    let script = format!(
        "{READ_CHART}
         if (!(window.extstatus?.compare?.stats.loads > 0)) return null;
         const rows = [...document.querySelectorAll('#compare-rows li.dept-row')];
         const sinceMidnight = (Date.now() - new Date().setHours(0, 0, 0, 0)) / 1000;
         return {{ sinceMidnight, note: document.getElementById('compare-note').hidden,
           rows: rows.map(li => ({{
             department: li.dataset.department,
             counts: Object.fromEntries([...li.querySelectorAll('.count-now')]
               .map(s => [s.dataset.key, Number(s.querySelector('b').textContent)])),
             idle: li.querySelector('.idle-now').dataset.extension ?? null,
             idleText: li.querySelector('.idle-now').textContent,
             chart: read(li.querySelector('.chart-box')),
           }})) }};"
    );
    let got = wait_for(&b, "the department comparison", PATIENCE, &script).await?;
    assert_eq!(got["note"], true, "no error shown: {got}");
    let rows = got["rows"].as_array().context("rows")?;
    let names: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["department"].as_str())
        .collect();
    assert_eq!(names, ["Sales", "Support"], "{got}");
    let (sales, support) = (&rows[0], &rows[1]);
    assert_eq!(
        sales["counts"],
        json!({"extensions": 2, "online": 2, "offline": 0, "unknown": 0, "on_call": 1, "paused": 0}),
        "{sales}"
    );
    assert_eq!(sales["idle"], "1001", "{sales}");
    assert!(
        sales["idleText"]
            .as_str()
            .unwrap_or_default()
            .contains("Alice Martin"),
        "{sales}"
    );
    assert_eq!(
        support["counts"],
        json!({"extensions": 2, "online": 1, "offline": 1, "unknown": 0, "on_call": 0, "paused": 1}),
        "{support}"
    );
    assert_eq!(support["idle"], Value::Null, "{support}");
    // Agent-seconds: Sales 25:00 + 55:00 available, 15:00 on calls, 10:00 paused, 05:00
    // unavailable; Support 25:00 available, 30:00 paused, 35:00 unavailable.
    check_chart(
        "Sales",
        &sales["chart"],
        &[
            ("available", 4800),
            ("on_call", 900),
            ("paused", 600),
            ("unavailable", 300),
        ],
    );
    check_chart(
        "Support",
        &support["chart"],
        &[
            ("available", 1500),
            ("on_call", 0),
            ("paused", 1800),
            ("unavailable", 2100),
        ],
    );
    // The window is today: local midnight to now, two agents each.
    let total: i64 = ["available", "on_call", "paused", "unavailable", "unknown"]
        .iter()
        .map(|k| seconds_of(&sales["chart"][k]["dur"]))
        .sum();
    let since_midnight = got["sinceMidnight"].as_f64().unwrap_or(0.0);
    assert!(
        since_midnight > 11.0 * 3600.0,
        "local time in {zone} is past noon"
    );
    assert!(
        (total as f64 / 2.0 - since_midnight).abs() < 60.0,
        "Sales covers {total} agent-seconds, {since_midnight} s since local midnight"
    );

    // One agent's day: click Alice's Chart button.
    let button = b
        .find("li.tile[data-ext=\"1001\"] button.chart")
        .await
        .context("Alice's chart button")?;
    b.click(&button).await?;
    let agent_script = format!(
        "{READ_CHART}
         const d = document.getElementById('agent-chart');
         const boxes = d.querySelectorAll('.chart-box');
         if (!d.open || boxes.length < 2) return null;
         return {{ title: document.getElementById('chart-title').textContent,
           error: document.getElementById('chart-error').hidden,
           availability: read(boxes[0]), phone: read(boxes[1]),
           extra: Object.fromEntries([...d.querySelectorAll('.chart-extra dd')]
             .map(dd => [dd.dataset.key, dd.textContent])) }};"
    );
    let chart = wait_for(&b, "Alice's chart", PATIENCE, &agent_script).await?;
    assert_eq!(chart["title"], "Today: Alice Martin (1001)", "{chart}");
    assert_eq!(chart["error"], true, "{chart}");
    check_chart(
        "Alice",
        &chart["availability"],
        &[
            ("available", 1500),
            ("on_call", 900),
            ("paused", 600),
            ("unavailable", 300),
        ],
    );
    // The phone's states in the tiles' categories: idle includes the paused time.
    check_chart(
        "Alice's phone",
        &chart["phone"],
        &[
            ("idle", 2100),
            ("oncall", 900),
            ("ringing", 0),
            ("hold", 0),
            ("offline", 300),
        ],
    );
    assert_eq!(
        chart["extra"],
        json!({"on_call_total": "00:15:00", "paused_total": "00:10:00", "reason:lunch": "00:10:00"}),
        "{chart}"
    );

    if let Some(path) = std::env::var_os("EXTSTATUS_CHARTS_SCREENSHOT") {
        std::fs::write(&path, b.screenshot().await?)?;
    }

    // Errors are said in place: with the server gone, a refresh of the chart and the next
    // refresh of the comparison say so, and keep the figures.
    server.stop().await?;
    let refresh = b.find("#chart-refresh").await?;
    b.click(&refresh).await?;
    let error = wait_for(
        &b,
        "the chart's error",
        PATIENCE,
        "const e = document.getElementById('chart-error');
         return e.hidden ? null : { text: e.textContent,
           bars: document.querySelectorAll('#chart-body .chart-box').length };",
    )
    .await?;
    assert!(
        error["text"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be reached"),
        "{error}"
    );
    assert_eq!(error["bars"], 2, "{error}");
    b.exec("document.getElementById('agent-chart').close();", json!([]))
        .await?;
    let note = wait_for(
        &b,
        "the comparison's error",
        PATIENCE + Duration::from_secs(2),
        "const n = document.getElementById('compare-note');
         return n.hidden ? null : { text: n.textContent,
           rows: document.querySelectorAll('#compare-rows li.dept-row').length,
           stale: document.getElementById('compare').classList.contains('stale') };",
    )
    .await?;
    assert!(
        note["text"]
            .as_str()
            .unwrap_or_default()
            .contains("the server could not be reached"),
        "{note}"
    );
    assert_eq!(note["rows"], 2, "{note}");
    assert_eq!(note["stale"], true, "{note}");
    b.close().await
}
