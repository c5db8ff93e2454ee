//! End-to-end tests of the dashboard in headless Chromium: a real api-server on port 0, fed by
//! the loopback AMI peer (the real Asterisk captures), driven over WebDriver.
//!
//! The browser is Debian's `chromium` with `chromium-driver`; when either is missing these
//! tests fail with a message naming the packages, never pass silently. Browser tests run one
//! at a time (two cores and a thousand tiles do not share well), through [`one_browser`].
//!
//! `EXTSTATUS_SCREENSHOT=docs/screenshot.png` makes the main test save a screenshot there.

mod charts;
mod webdriver;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ami_sim::CallStep;
use anyhow::{Context as _, bail, ensure};
use api_server::config::{Timing, UiConfig};
use domain::ExtensionState;
use reqwest::Method;
use serde_json::{Value, json};
use tests::ami_peer::{AmiPeer, PeerConfig};
use tests::server::{Options, PATIENCE, TestServer, eventually};

use webdriver::Browser;

/// One browser test at a time on the machine, across test processes too (nextest runs every
/// test in its own process): a file lock, released when the guard is dropped.
struct OneBrowser(#[allow(dead_code, reason = "held for its lock")] std::fs::File);

async fn one_browser() -> anyhow::Result<OneBrowser> {
    let path = std::env::temp_dir().join("extstatus-browser-tests.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file)).await??;
    Ok(OneBrowser(file))
}

/// How soon a status change must be on screen after the PBX sent it (a user-facing promise).
const STATUS_CHANGE_DEADLINE: Duration = Duration::from_secs(1);

/// The people on the test board: (extension, agent, department).
const PEOPLE: &[(&str, &str, &str)] = &[
    ("1001", "Alice Martin", "Sales"),
    ("1002", "Bob Chen", "Sales"),
    ("1003", "Carla Ruiz", "Sales"),
    ("2001", "Dmitri Ivanov", "Support"),
    ("2002", "Eve Okafor", "Support"),
    ("2003", "Farah Khan", "Support"),
    ("3001", "Gus Lind", "Billing"),
    ("3002", "Hana Sato", "Billing"),
];

/// The PBX: the loopback AMI peer, which speaks the real Asterisk captures, with a hint for
/// every extension of the test.
struct Pbx(AmiPeer);

impl Pbx {
    async fn start(extensions: &[&str], initial: ExtensionState) -> Pbx {
        let peer = AmiPeer::start(PeerConfig::default()).await;
        let hints: Vec<(&str, i32)> = extensions.iter().map(|e| (*e, initial.code())).collect();
        peer.replace_hints(&hints);
        Pbx(peer)
    }

    fn options(&self) -> Options {
        let config = PeerConfig::default();
        Options::with_ami(self.0.addr(), &config.username, &config.secret)
    }

    /// Changes a phone's state; the peer writes the AMI events at once.
    fn set(&self, extension: &str, state: ExtensionState) {
        self.0.set_state(extension, state.code());
    }

    /// The PBX goes away: every AMI session ends and new ones are refused.
    fn stop(&self) {
        self.0.refuse_connections(true);
        self.0.drop_connections();
    }
}

/// Polls a script until it returns something other than `null`/`false`, or fails after
/// `patience` naming `what`.
async fn wait_for(
    b: &Browser,
    what: &str,
    patience: Duration,
    script: &str,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + patience;
    loop {
        let v = b.exec(script, json!([])).await?;
        if !(v.is_null() || v == Value::Bool(false)) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {patience:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// The extension numbers of the tiles a person can see (not hidden by a filter).
async fn visible_numbers(b: &Browser) -> anyhow::Result<BTreeSet<String>> {
    let v = b
        .exec(
            "return [...document.querySelectorAll('li.tile')]
                .filter(li => li.offsetParent !== null)
                .map(li => li.querySelector('.ext').textContent);",
            json!([]),
        )
        .await?;
    Ok(serde_json::from_value(v)?)
}

async fn wait_visible(b: &Browser, what: &str, want: &[&str]) -> anyhow::Result<()> {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = visible_numbers(b).await?;
        if got == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: visible tiles are {got:?}, want {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A script that reads one tile's fields, or `null` when the tile is not there.
fn tile_script(extension: &str) -> String {
    format!(
        "const li = [...document.querySelectorAll('li.tile')]
            .find(li => li.querySelector('.ext').textContent === {ext});
         if (!li) return null;
         return {{ device: li.dataset.device, state: li.querySelector('.state-text').textContent,
                  name: li.querySelector('.name').textContent,
                  presence: li.querySelector('.presence').textContent,
                  icon: li.querySelector('use').getAttribute('href'),
                  dur: li.querySelector('.dur').textContent,
                  changed: li.querySelector('time.changed').textContent,
                  seen: li.querySelector('time.seen').textContent,
                  stale: getComputedStyle(li.querySelector('.stale-note')).display !== 'none' }};",
        ext = serde_json::to_string(extension).unwrap_or_default()
    )
}

/// Chooses an option of a `<select>` by clicking it, which WebDriver turns into the selection
/// and `change` event a person's choice makes.
async fn choose(b: &Browser, select: &str, value: &str) -> anyhow::Result<()> {
    let option = b
        .find(&format!(
            "{select} option[value={}]",
            serde_json::to_string(value)?
        ))
        .await?;
    b.click(&option).await
}

/// Test timing with a resync every second: records created after the server's first list of
/// the PBX get their states from the next one (a resync of an unchanged board writes nothing).
fn quick_resync() -> Timing {
    Timing {
        resync_interval: Duration::from_secs(1),
        ..Options::fast_timing()
    }
}

async fn start_board(pbx: &Pbx, options: Options) -> anyhow::Result<(TestServer, Vec<Value>)> {
    let server = TestServer::start(Options {
        ami: pbx.options().ami,
        timing: Some(quick_resync()),
        ..options
    })
    .await?;
    let mut records = Vec::new();
    for (ext, name, dept) in PEOPLE {
        records.push(server.create(ext, name, dept).await?);
    }
    // The PBX's states reach the store (at the latest with the next resync) before the page
    // loads, so the first render already shows them.
    for (ext, ..) in PEOPLE {
        server.wait_for_code(ext, 0).await?;
    }
    Ok((server, records))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lives_in_a_real_browser() -> anyhow::Result<()> {
    let _one = one_browser().await?;
    let numbers: Vec<&str> = PEOPLE.iter().map(|p| p.0).collect();
    let pbx = Pbx::start(&numbers, ExtensionState::NotInUse).await;
    let (server, _records) = start_board(&pbx, Options::default()).await?;
    let b = Browser::start().await?;
    b.goto(&server.url("/?poll=400&debug")).await?;

    // The first render lists every extension, live.
    wait_visible(&b, "first render", &numbers).await?;
    wait_for(
        &b,
        "the live indicator",
        PATIENCE,
        "return document.getElementById('conn').dataset.state === 'live';",
    )
    .await?;
    let first = b.exec(&tile_script("1001"), json!([])).await?;
    assert_eq!(first["device"], "NOT_INUSE", "{first}");
    assert_eq!(first["state"], "Idle", "{first}");
    assert_eq!(first["icon"], "#i-idle", "{first}");
    assert_eq!(first["presence"], "online", "{first}");
    let counts = b
        .exec(
            "return document.querySelector('section[data-group=\"Sales\"] .counts').textContent;",
            json!([]),
        )
        .await?;
    assert!(
        counts.as_str().unwrap_or_default().contains("3 idle"),
        "{counts}"
    );
    // Without --ami-actions a queue member's tile offers no Pause.
    ensure!(pbx.0.add_member("sales", "1001", "Alice Martin", false));
    let alice = wait_tile(&b, "1001", "Alice in sales", |v| {
        v["chips"][0]["queue"] == "sales"
    })
    .await?;
    assert_eq!(alice["pause"], Value::Null, "actions are off: {alice}");

    // A status change is on screen within a second of the PBX sending it, without a reload.
    b.exec("window.__sameDocument = true;", json!([])).await?;
    let sent = Instant::now();
    pbx.set("1002", ExtensionState::InUse);
    let left = STATUS_CHANGE_DEADLINE.saturating_sub(sent.elapsed());
    let shown = wait_for(
        &b,
        "1002 on call",
        left,
        &format!(
            "const t = (() => {{ {} }})(); return t && t.device === 'INUSE' ? t : null;",
            tile_script("1002")
        ),
    )
    .await
    .with_context(|| format!("a status change must show within {STATUS_CHANGE_DEADLINE:?}"))?;
    let took = sent.elapsed();
    assert!(took <= STATUS_CHANGE_DEADLINE, "took {took:?}");
    assert_eq!(shown["state"], "On call", "{shown}");
    assert_eq!(shown["icon"], "#i-call", "{shown}");
    assert_eq!(
        b.exec("return window.__sameDocument === true;", json!([]))
            .await?,
        true
    );
    eprintln!("browser: status change on screen {took:?} after the PBX event");

    // Filters: department, status, and search by name or by number.
    choose(&b, "#dept", "Support").await?;
    wait_visible(&b, "department filter", &["2001", "2002", "2003"]).await?;
    choose(&b, "#dept", "").await?;
    choose(&b, "#status", "oncall").await?;
    wait_visible(&b, "status filter", &["1002"]).await?;
    choose(&b, "#status", "").await?;
    let q = b.find("#q").await?;
    b.type_text(&q, "eve").await?;
    wait_visible(&b, "search by name", &["2002"]).await?;
    b.clear(&q).await?;
    b.type_text(&q, "300").await?;
    wait_visible(&b, "search by number", &["3001", "3002"]).await?;
    b.clear(&q).await?;
    wait_visible(&b, "search cleared", &numbers).await?;
    choose(&b, "#group", "category").await?;
    let groups = wait_for(
        &b,
        "grouping by status",
        PATIENCE,
        "const g = [...document.querySelectorAll('section.group')].map(s => s.dataset.group);
         return g.includes('oncall') ? g : null;",
    )
    .await?;
    assert_eq!(groups, json!(["idle", "oncall"]));
    choose(&b, "#group", "department").await?;

    // Killing the WebSocket falls back to polling; a change meanwhile shows; then it recovers.
    b.exec("window.extstatus.debug.dropSocket(4000);", json!([]))
        .await?;
    wait_for(
        &b,
        "the polling indicator",
        PATIENCE,
        "return document.getElementById('conn').dataset.state === 'polling';",
    )
    .await?;
    let id = server.record("3001").await?["_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let renamed = server
        .request(
            Method::PUT,
            &format!("/api/extensions/{id}"),
            Some(&json!({ "agent_name": "Gus Lindqvist" })),
            None,
        )
        .await?;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    pbx.set("3002", ExtensionState::Ringing);
    let during = wait_for(
        &b,
        "changes shown by polling",
        PATIENCE,
        &format!(
            "const a = (() => {{ {} }})(); const c = (() => {{ {} }})();
             return a && c && a.name === 'Gus Lindqvist' && c.device === 'RINGING'
                 ? {{ link: window.extstatus.live.link.state, socket: window.extstatus.live.ws !== null,
                     indicator: document.getElementById('conn-text').textContent }} : null;",
            tile_script("3001"),
            tile_script("3002")
        ),
    )
    .await?;
    assert_eq!(during["link"], "polling", "{during}");
    assert_eq!(during["socket"], false, "{during}");
    assert!(
        during["indicator"]
            .as_str()
            .unwrap_or_default()
            .contains("polling"),
        "{during}"
    );
    let stats = wait_for(
        &b,
        "the WebSocket back",
        PATIENCE,
        "const s = window.extstatus.stats(); return s.link === 'live' ? s : null;",
    )
    .await?;
    assert!(stats["live"]["polls"].as_u64() >= Some(1), "{stats}");
    assert_eq!(
        stats["live"]["snapshots"], 1,
        "the reconnect resumed instead of starting over: {stats}"
    );
    pbx.set("2003", ExtensionState::OnHold);
    wait_for(
        &b,
        "a change after the recovery",
        PATIENCE,
        &format!(
            "const t = (() => {{ {} }})(); return t && t.device === 'ONHOLD';",
            tile_script("2003")
        ),
    )
    .await?;

    // A frame that skips a number (something lost on the way) is not applied: the page
    // reconnects resuming from the last number it had, and the server fills the hole.
    let before = b
        .exec(
            "const s = window.extstatus.stats(); const seq = window.extstatus.live.lastSeq;
             window.extstatus.debug.injectFrame(JSON.stringify({ type: 'extension_deleted', seq: seq + 5, _id: 'ffffffffffffffffffffffff' }));
             return { seq, reconnects: s.live.reconnects };",
            json!([]),
        )
        .await?;
    pbx.set("2002", ExtensionState::RingInUse);
    let after = wait_for(
        &b,
        "a reconnect after the gap, and live changes again",
        PATIENCE,
        &format!(
            "const s = window.extstatus.stats(); const t = (() => {{ {} }})();
             return s.link === 'live' && s.live.reconnects > {} && t && t.device === 'RINGINUSE' ? s : null;",
            tile_script("2002"),
            before["reconnects"]
        ),
    )
    .await?;
    assert_eq!(after["live"]["gaps"], 1, "{after}");
    assert_eq!(
        after["live"]["snapshots"], 1,
        "the gap was filled by resuming, not by a new snapshot: {after}"
    );

    // Adding an extension with an invalid number shows the server's error next to the field.
    b.click(&b.find("#add").await?).await?;
    let ext = b.find("#f-extension").await?;
    b.type_text(&ext, "12a4").await?;
    b.type_text(&b.find("#f-agent_name").await?, "Ivan Petrov")
        .await?;
    b.type_text(&b.find("#f-department").await?, "Billing")
        .await?;
    b.click(&b.find("#edit-save").await?).await?;
    let error = wait_for(
        &b,
        "the field error",
        PATIENCE,
        "const p = document.getElementById('f-extension-error');
         return !p.hidden && p.offsetParent !== null
             ? { text: p.textContent, invalid: document.getElementById('f-extension').getAttribute('aria-invalid'),
                 open: document.getElementById('edit').open } : null;",
    )
    .await?;
    assert!(
        error["text"]
            .as_str()
            .unwrap_or_default()
            .contains("digits"),
        "{error}"
    );
    assert_eq!(error["invalid"], "true", "{error}");
    assert_eq!(error["open"], true, "{error}");
    ensure!(server.record("12a4").await.is_err(), "nothing was stored");
    // Corrected, it is added and appears on the board.
    b.clear(&ext).await?;
    b.type_text(&ext, "3003").await?;
    b.click(&b.find("#edit-save").await?).await?;
    wait_for(
        &b,
        "the dialog to close",
        PATIENCE,
        "return !document.getElementById('edit').open;",
    )
    .await?;
    wait_for(
        &b,
        "the new tile",
        PATIENCE,
        &format!("return ((() => {{ {} }})()) !== null;", tile_script("3003")),
    )
    .await?;

    if let Some(path) = std::env::var_os("EXTSTATUS_SCREENSHOT") {
        // A busier board for the picture: one of each state.
        pbx.set("1003", ExtensionState::Unavailable);
        pbx.set("2001", ExtensionState::Busy);
        pbx.set("1001", ExtensionState::RingInUse);
        wait_for(
            &b,
            "the screenshot's states",
            PATIENCE,
            &format!(
                "const t = (() => {{ {} }})(); return t && t.device === 'RINGINUSE';",
                tile_script("1001")
            ),
        )
        .await?;
        b.exec(
            "window.scrollTo(0, 0); return window.extstatus.flushed();",
            json!([]),
        )
        .await?;
        std::fs::write(&path, b.screenshot().await?).context("writing the screenshot")?;
    }

    // The PBX goes away: after the grace period every tile is grey and says it is stale.
    pbx.stop();
    let stale = wait_for(
        &b,
        "the stale board",
        PATIENCE,
        &format!(
            "const t = (() => {{ {} }})(); const pbx = document.getElementById('pbx');
             return t && t.stale && !pbx.hidden ? {{ banner: pbx.textContent, tile: t }} : null;",
            tile_script("1001")
        ),
    )
    .await?;
    assert!(
        stale["banner"]
            .as_str()
            .unwrap_or_default()
            .contains("PBX link down"),
        "{stale}"
    );

    b.close().await?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_a_token_and_keeps_it_for_the_tab() -> anyhow::Result<()> {
    let _one = one_browser().await?;
    let pbx = Pbx::start(&["1001"], ExtensionState::Busy).await;
    let server = TestServer::start(Options {
        ami: pbx.options().ami,
        admin_token: Some("admin-secret".to_owned()),
        viewer_token: Some("viewer-secret".to_owned()),
        ..Options::default()
    })
    .await?;
    server.create("1001", "Alice Martin", "Sales").await?;
    let b = Browser::start().await?;
    b.goto(&server.url("/")).await?;
    wait_for(
        &b,
        "the token dialog",
        PATIENCE,
        "return document.getElementById('token').open;",
    )
    .await?;
    b.type_text(&b.find("#token-input").await?, "viewer-secret")
        .await?;
    b.click(&b.find("#token form button[type=submit]").await?)
        .await?;
    wait_visible(&b, "the board after the token", &["1001"]).await?;
    wait_for(
        &b,
        "live",
        PATIENCE,
        "return document.getElementById('conn').dataset.state === 'live';",
    )
    .await?;
    assert_eq!(
        b.exec(
            "return sessionStorage.getItem('extstatus.token');",
            json!([])
        )
        .await?,
        "viewer-secret"
    );

    // A write with the viewer token is refused; the page asks for an admin token and retries.
    b.click(&b.find("li.tile button.edit").await?).await?;
    let active = b.find("#f-is_active").await?;
    b.click(&active).await?;
    b.click(&b.find("#edit-save").await?).await?;
    wait_for(
        &b,
        "the admin token dialog",
        PATIENCE,
        "return document.getElementById('token').open;",
    )
    .await?;
    let why = b
        .exec(
            "return document.getElementById('token-why').textContent;",
            json!([]),
        )
        .await?;
    assert!(why.as_str().unwrap_or_default().contains("admin"), "{why}");
    b.type_text(&b.find("#token-input").await?, "admin-secret")
        .await?;
    b.click(&b.find("#token form button[type=submit]").await?)
        .await?;
    wait_for(
        &b,
        "the dialog to close",
        PATIENCE,
        "return !document.getElementById('edit').open;",
    )
    .await?;
    let stored = server.record_as("1001", Some("admin-secret")).await?;
    assert_eq!(stored["is_active"], false, "{stored}");
    // Deactivated extensions leave the board unless the person asks for them.
    wait_visible(&b, "inactive hidden", &[]).await?;
    b.click(&b.find("#inactive").await?).await?;
    wait_visible(&b, "inactive shown", &["1001"]).await?;

    b.close().await?;
    server.stop().await
}

/// A script that reads the call-center parts of one tile, or `null` when it is not there.
fn call_center_script(extension: &str) -> String {
    format!(
        "const li = [...document.querySelectorAll('li.tile')]
            .find(li => li.querySelector('.ext').textContent === {ext});
         if (!li) return null;
         const shown = (el) => el.offsetParent !== null;
         const pres = li.querySelector('.pbadge');
         const call = li.querySelector('.call');
         const pause = li.querySelector('button.pause');
         return {{
           chips: [...li.querySelectorAll('.qchip')].map(c => ({{
             queue: c.dataset.queue, paused: c.dataset.paused === 'true', text: c.textContent }})),
           presence: shown(pres) ? pres.textContent : null,
           presenceLevel: pres.dataset.level ?? null,
           call: shown(call) ? call.textContent : null,
           callDur: li.querySelector('.call-dur').textContent,
           pause: shown(pause) ? pause.textContent : null,
         }};",
        ext = serde_json::to_string(extension).unwrap_or_default()
    )
}

/// Runs `script` until what it answers is not `null` and satisfies `check`, or fails after
/// [`PATIENCE`] naming `what` and the last answer about `subject`.
async fn wait_checked(
    b: &Browser,
    script: &str,
    subject: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = b.exec(script, json!([])).await?;
        if !v.is_null() && check(&v) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}: {subject} is {v}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a tile's call-center parts satisfy `check`.
async fn wait_tile(
    b: &Browser,
    extension: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let script = call_center_script(extension);
    wait_checked(b, &script, &format!("tile {extension}"), what, check).await
}

/// The queue strip's chip for `queue`: waiting text, longest wait, level and its words.
fn strip_script(queue: &str) -> String {
    format!(
        "const li = document.querySelector('#queue-list li[data-queue=' + JSON.stringify({q}) + ']');
         if (!li || document.getElementById('queue-strip').hidden) return null;
         return {{ waiting: li.querySelector('.queue-waiting').textContent,
                  wait: li.querySelector('.queue-wait').textContent,
                  level: li.dataset.level, text: li.textContent }};",
        q = serde_json::to_string(queue).unwrap_or_default()
    )
}

/// Waits until the queue strip's chip for `queue` satisfies `check`.
async fn wait_strip(
    b: &Browser,
    queue: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let script = strip_script(queue);
    wait_checked(b, &script, &format!("the strip's {queue}"), what, check).await
}

fn text_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// The call center on the board: queue chips with paused ones marked (reason and a live
/// duration), the presence badge, the call line with a live duration, the queue strip turning
/// amber and red past the configured thresholds, and Pause / Resume through the PBX with
/// `--ami-actions`, the server's refusal of a bad reason shown next to the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_center_shows_on_the_board() -> anyhow::Result<()> {
    let _one = one_browser().await?;
    let numbers: Vec<&str> = PEOPLE.iter().map(|p| p.0).collect();
    let pbx = Pbx::start(&numbers, ExtensionState::NotInUse).await;
    // Alice's hint names a presence provider too (the next list carries it).
    ensure!(
        pbx.0
            .simulator()
            .add_presence_to_hint("1001", "CustomPresence:1001")
    );
    let (server, _records) = start_board(
        &pbx,
        Options {
            ami_actions: true,
            ui: Some(UiConfig {
                pause_reasons: vec!["Lunch".to_owned(), "Coaching".to_owned()],
                queue_wait_amber: Duration::from_secs(1),
                queue_wait_red: Duration::from_secs(3),
            }),
            ..Options::default()
        },
    )
    .await?;
    ensure!(pbx.0.add_member("sales", "1001", "Alice Martin", false));
    ensure!(pbx.0.add_member("support", "1001", "Alice Martin", false));
    ensure!(pbx.0.add_member("sales", "1002", "Bob Chen", false));
    // Dmitri went to lunch 12 min 34 s before the page loaded (the PBX's LastPause).
    ensure!(pbx.0.add_member("support", "2001", "Dmitri Ivanov", false));
    let lunch = u64::try_from(domain::now().timestamp() - 754)?;
    ensure!(pbx.0.pause_since("2001", "Lunch", lunch, false));
    eventually("Dmitri's pause stored", || async {
        let r = server.record("2001").await?;
        Ok(r["queues"][0]["paused_since"].is_string().then_some(()))
    })
    .await?;

    let b = Browser::start().await?;
    b.goto(&server.url("/?queues=250")).await?;
    let alice = wait_tile(&b, "1001", "Alice's queues", |v| {
        v["chips"].as_array().map(Vec::len) == Some(2)
    })
    .await?;
    assert_eq!(alice["chips"][0]["queue"], "sales", "{alice}");
    assert_eq!(alice["chips"][0]["paused"], false, "{alice}");
    assert_eq!(alice["pause"], "Pause", "actions are on: {alice}");
    // Carla is in no queue: nothing to pause.
    let carla = wait_tile(&b, "1003", "Carla's tile", |_| true).await?;
    assert_eq!(carla["pause"], Value::Null, "{carla}");
    assert_eq!(carla["chips"], json!([]), "{carla}");
    // A pause from before the page loaded shows its real length, not "at least" the time
    // since the page saw it.
    let dmitri = wait_tile(&b, "2001", "Dmitri's pause", |v| {
        v["chips"][0]["paused"] == true
    })
    .await?;
    let chip = text_of(&dmitri["chips"][0], "text");
    assert!(
        chip.contains("support paused · Lunch · for 12:"),
        "12 min 34 s and counting: {dmitri}"
    );
    assert!(!chip.contains('≥'), "exact, not a lower bound: {dmitri}");

    // A pause on the PBX shows on the tile with its reason, and its clock runs.
    ensure!(pbx.0.pause("1002", Some("Lunch"), false));
    let bob = wait_tile(&b, "1002", "Bob paused", |v| {
        v["chips"][0]["paused"] == true
    })
    .await?;
    let chip = text_of(&bob["chips"][0], "text");
    assert!(chip.contains("sales paused · Lunch"), "{bob}");
    assert!(chip.contains("for 00:0"), "seen live, so exact: {bob}");
    assert_eq!(bob["pause"], "Resume", "{bob}");
    wait_tile(&b, "1002", "Bob's pause clock to run", |v| {
        !text_of(&v["chips"][0], "text").ends_with("00:00")
    })
    .await?;
    let summary = b
        .exec(
            "return document.getElementById('summary').textContent;",
            json!([]),
        )
        .await?;
    assert!(
        summary.as_str().unwrap_or_default().contains("2 paused"),
        "{summary}"
    );

    // Presence: DND stands out, in words.
    ensure!(pbx.0.set_presence("1001", "dnd", "Back at 14:00", false));
    let alice = wait_tile(&b, "1001", "Alice on DND", |v| v["presence"] == "DND").await?;
    assert_eq!(alice["presenceLevel"], "dnd", "{alice}");
    ensure!(pbx.0.set_presence("1001", "away", "", false));
    wait_tile(&b, "1001", "Alice away", |v| {
        v["presence"] == "Away" && v["presenceLevel"] == "away"
    })
    .await?;

    // A caller waits in sales: the strip counts them, and the longest wait turns amber, then
    // red, between polls too.
    let call = pbx.0.queued_call("sales", "+15550100", "Jane Doe", false);
    let waiting = wait_strip(&b, "sales", "a caller waiting", |v| {
        v["waiting"] == "1 waiting"
    })
    .await?;
    assert_eq!(waiting["level"], "ok", "{waiting}");
    let amber = wait_strip(&b, "sales", "amber", |v| v["level"] == "amber").await?;
    assert!(text_of(&amber, "text").contains("long wait"), "{amber}");
    let red = wait_strip(&b, "sales", "red", |v| v["level"] == "red").await?;
    assert!(text_of(&red, "text").contains("too long"), "{red}");

    // Alice takes the call: her tile shows the caller, the queue and a running duration.
    ensure!(
        pbx.0
            .call_step(call, CallStep::Ring("Local/1001@agents-ring".into()), false)
    );
    ensure!(pbx.0.call_step(call, CallStep::Answer, false));
    let alice = wait_tile(&b, "1001", "Alice's call", |v| {
        text_of(v, "call").contains("Jane Doe") && text_of(v, "call").contains("sales queue")
    })
    .await?;
    assert!(text_of(&alice, "call").contains("+15550100"), "{alice}");
    let first = text_of(&alice, "callDur");
    wait_tile(&b, "1001", "the call clock to run", |v| {
        text_of(v, "callDur") != first
    })
    .await?;
    wait_strip(&b, "sales", "nobody waiting", |v| {
        v["waiting"] == "0 waiting" && v["level"] == "ok"
    })
    .await?;
    ensure!(pbx.0.call_step(call, CallStep::HangUp, false));
    wait_tile(&b, "1001", "the call to end", |v| v["call"].is_null()).await?;

    // Pause from the page: a reason the server refuses is shown next to the field and
    // changes nothing.
    b.click(&b.find("li.tile[data-ext='1001'] button.pause").await?)
        .await?;
    wait_for(
        &b,
        "the pause dialog",
        PATIENCE,
        "return document.getElementById('pause').open;",
    )
    .await?;
    let choices = b
        .exec(
            "return [...document.querySelectorAll('#p-reason-choice option')].map(o => o.textContent);",
            json!([]),
        )
        .await?;
    assert_eq!(choices, json!(["Lunch", "Coaching", "Other…"]));
    choose(&b, "#p-reason-choice", " other").await?;
    b.type_text(&b.find("#p-reason").await?, &"x".repeat(65))
        .await?;
    b.click(&b.find("#pause-save").await?).await?;
    let error = wait_for(
        &b,
        "the reason's error",
        PATIENCE,
        "const p = document.getElementById('p-reason-error');
         return !p.hidden && p.textContent;",
    )
    .await?;
    assert!(error.as_str().unwrap_or_default().contains("64"), "{error}");
    let stored = server.record("1001").await?;
    assert!(
        stored["queues"]
            .as_array()
            .is_some_and(|q| q.iter().all(|m| m["paused"] == false)),
        "{stored}"
    );

    // A reason from the list, in one queue: the PBX confirms and the tile shows it.
    choose(&b, "#p-reason-choice", "Coaching").await?;
    choose(&b, "#p-queue", "support").await?;
    b.click(&b.find("#pause-save").await?).await?;
    wait_for(
        &b,
        "the dialog to close",
        PATIENCE,
        "return !document.getElementById('pause').open;",
    )
    .await?;
    let alice = wait_tile(&b, "1001", "Alice paused in support", |v| {
        v["chips"][1]["paused"] == true
    })
    .await?;
    assert_eq!(
        alice["chips"][0]["paused"], false,
        "sales untouched: {alice}"
    );
    assert!(
        text_of(&alice["chips"][1], "text").contains("support paused · Coaching"),
        "{alice}"
    );
    assert_eq!(alice["pause"], "Resume", "{alice}");
    let stored = server.record("1001").await?;
    assert_eq!(stored["queues"][1]["queue"], "support", "{stored}");
    assert_eq!(stored["queues"][1]["paused_reason"], "Coaching", "{stored}");
    assert!(
        pbx.0.actions_received().iter().any(|a| a == "QueuePause"),
        "{:?}",
        pbx.0.actions_received()
    );

    // Resume, from the same dialog.
    b.click(&b.find("li.tile[data-ext='1001'] button.pause").await?)
        .await?;
    wait_for(
        &b,
        "the pause dialog",
        PATIENCE,
        "return document.getElementById('pause').open;",
    )
    .await?;
    b.click(&b.find("#pause-resume").await?).await?;
    wait_for(
        &b,
        "the dialog to close",
        PATIENCE,
        "return !document.getElementById('pause').open;",
    )
    .await?;
    let alice = wait_tile(&b, "1001", "Alice resumed", |v| {
        v["chips"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["paused"] == false))
    })
    .await?;
    assert_eq!(alice["pause"], "Pause", "{alice}");
    let stored = server.record("1001").await?;
    assert!(
        stored["queues"]
            .as_array()
            .is_some_and(|q| q.iter().all(|m| m["paused"] == false)),
        "{stored}"
    );

    b.close().await?;
    server.stop().await
}

/// How many extensions the scale test puts on the board.
const SCALE: usize = 1000;
/// How many status changes it streams, and how fast.
const STREAM_UPDATES: usize = 500;
const STREAM_RATE: u64 = 100;

/// The page's cumulative main-thread counters from the DevTools protocol, in milliseconds.
async fn main_thread_ms(b: &Browser) -> anyhow::Result<serde_json::Map<String, Value>> {
    let metrics = b.cdp("Performance.getMetrics", json!({})).await?;
    let mut out = serde_json::Map::new();
    for m in metrics["metrics"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or_default();
        if name.ends_with("Duration") || name == "ThreadTime" || name == "ProcessTime" {
            out.insert(
                name.to_owned(),
                json!(m["value"].as_f64().unwrap_or(0.0) * 1000.0),
            );
        }
    }
    Ok(out)
}

fn delta(
    after: &serde_json::Map<String, Value>,
    before: &serde_json::Map<String, Value>,
    key: &str,
) -> f64 {
    after[key].as_f64().unwrap_or(0.0) - before[key].as_f64().unwrap_or(0.0)
}

/// A thousand extensions render once and are then patched in place while the PBX changes a
/// hundred of them a second through the whole pipeline (AMI peer, AMI client, store, hub,
/// WebSocket). It asserts only correctness: every tile shows what the store holds and no tile
/// was rebuilt. It prints the time to first render and the main-thread time per update, the
/// numbers in docs/performance.md; they are measurements, not pass marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_extensions_render_once_and_patch_in_place() -> anyhow::Result<()> {
    let _one = one_browser().await?;
    let numbers: Vec<String> = (0..SCALE).map(|i| (10_000 + i).to_string()).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let pbx = Pbx::start(&refs, ExtensionState::NotInUse).await;
    let server = TestServer::start(Options {
        timing: Some(quick_resync()),
        ..pbx.options()
    })
    .await?;
    const DEPARTMENTS: [&str; 8] = [
        "Sales",
        "Support",
        "Billing",
        "Retention",
        "Onboarding",
        "Escalations",
        "Claims",
        "Renewals",
    ];
    for chunk in numbers.chunks(25) {
        let creates = chunk.iter().enumerate().map(|(i, n)| {
            let server = &server;
            let dept = DEPARTMENTS[(i * 7 + n.len()) % DEPARTMENTS.len()];
            async move { server.create(n, &format!("Agent {n}"), dept).await }
        });
        for r in futures_util::future::join_all(creates).await {
            r?;
        }
    }
    tests::server::eventually("every extension idle in the store", || async {
        let all = server.get("/api/extensions").await?.json;
        let idle = all
            .as_array()
            .map_or(0, |a| a.iter().filter(|e| e["status_code"] == 0).count());
        Ok((idle == SCALE).then_some(()))
    })
    .await?;

    let b = Browser::start().await?;
    // EXTSTATUS_DASHBOARD_FRAME_MS sets the page's frame spacing, to compare settings.
    let frame = std::env::var("EXTSTATUS_DASHBOARD_FRAME_MS")
        .map(|ms| format!("&frame={ms}"))
        .unwrap_or_default();
    b.goto(&server.url(&format!("/?debug{frame}"))).await?;
    let first = wait_for(
        &b,
        "the first render",
        PATIENCE,
        "const f = window.extstatus && window.extstatus.stats().firstRender; return f && f.paintAt ? f : null;",
    )
    .await?;
    assert_eq!(first["rows"], SCALE, "{first}");
    wait_for(
        &b,
        "live",
        PATIENCE,
        "return window.extstatus.stats().link === 'live';",
    )
    .await?;
    // Every tile gets a mark that a rebuilt tile would not have.
    b.exec(
        "document.querySelectorAll('li.tile').forEach(li => { li.__original = true; });",
        json!([]),
    )
    .await?;

    b.cdp("Performance.enable", json!({})).await?;
    // The idle cost over the same time (the ticking clocks), to tell the updates' own cost.
    let stream_time = Duration::from_millis(STREAM_UPDATES as u64 * 1000 / STREAM_RATE);
    let idle_before = main_thread_ms(&b).await?;
    tokio::time::sleep(stream_time).await;
    let idle_after = main_thread_ms(&b).await?;

    let stats_before = b
        .exec(
            "window.extstatus.board.stats.maxFlushMs = 0; return window.extstatus.stats();",
            json!([]),
        )
        .await?;
    let before = main_thread_ms(&b).await?;
    // Each update moves one phone to the next state of a call cycle, so every one is a real
    // change; the phones are picked by a fixed pseudo-random walk, so runs are comparable.
    let cycle = [
        ExtensionState::NotInUse,
        ExtensionState::Ringing,
        ExtensionState::InUse,
        ExtensionState::OnHold,
    ];
    let mut step = vec![0usize; SCALE];
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / STREAM_RATE));
    let mut x: usize = 12345;
    for _ in 0..STREAM_UPDATES {
        tick.tick().await;
        x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
        let i = x % SCALE;
        step[i] += 1;
        pbx.set(&numbers[i], cycle[step[i] % cycle.len()]);
    }
    let want = stats_before["live"]["messages"].as_u64().unwrap_or(0) + STREAM_UPDATES as u64;
    wait_for(
        &b,
        "every update delivered",
        PATIENCE,
        &format!("return window.extstatus.stats().live.messages >= {want};"),
    )
    .await?;
    b.exec_async("window.extstatus.flushed().then(arguments[0]);", json!([]))
        .await?;
    let after = main_thread_ms(&b).await?;
    let stats_after = b
        .exec("return window.extstatus.stats();", json!([]))
        .await?;

    // Correctness: every tile shows what the store holds, and none was rebuilt.
    let shown = b
        .exec(
            "const out = {}; let rebuilt = 0;
             document.querySelectorAll('li.tile').forEach(li => {
                 out[li.dataset.ext] = li.dataset.device; if (!li.__original) rebuilt += 1; });
             return { devices: out, rebuilt };",
            json!([]),
        )
        .await?;
    assert_eq!(shown["rebuilt"], 0, "tiles were rebuilt");
    let stored = server.get("/api/extensions").await?.json;
    let stored = stored.as_array().context("list")?;
    assert_eq!(stored.len(), SCALE);
    for rec in stored {
        let ext = rec["extension"].as_str().unwrap_or_default();
        assert_eq!(shown["devices"][ext], rec["device_state"], "tile {ext}");
    }
    assert_eq!(stats_after["board"]["created"], SCALE, "{stats_after}");

    // The same stream again, synthetic and injected in the page through the WebSocket's own
    // code path (parse, seq check, apply), to tell the page's cost from the server's: on two
    // cores the debug-built server competes with the browser for the CPU.
    b.exec(
        &format!(
            "const ex = window.extstatus; const recs = [...ex.board.tiles.values()].map(t => t.rec);
             const cycle = [['RINGING', 8], ['INUSE', 1], ['ONHOLD', 16], ['NOT_INUSE', 0]];
             let seq = ex.live.lastSeq; let x = 777; const frames = [];
             for (let i = 0; i < {STREAM_UPDATES}; i++) {{
                 x = (x * 1103515245 + 12345) % 2147483648;
                 const [device_state, status_code] = cycle[i % cycle.length];
                 const now = new Date(Date.now() + i * 10).toISOString();
                 const extension = {{ ...recs[x % recs.length], device_state, status_code, status: 'online',
                                     last_status_change: now, last_seen: now }};
                 seq += 1;
                 frames.push(JSON.stringify({{ type: 'extension_status_updated', seq, extension }}));
             }}
             window.__frames = frames;"
        ),
        json!([]),
    )
    .await?;
    let injected_before = main_thread_ms(&b).await?;
    let injected_stats_before = b
        .exec("return window.extstatus.stats();", json!([]))
        .await?;
    b.script_timeout(PATIENCE).await?;
    b.exec_async(
        &format!(
            "const done = arguments[arguments.length - 1]; const frames = window.__frames; let i = 0;
             const timer = setInterval(() => {{
                 window.extstatus.debug.injectFrame(frames[i++]);
                 if (i === frames.length) {{ clearInterval(timer); window.extstatus.flushed().then(done); }}
             }}, {});",
            1000 / STREAM_RATE
        ),
        json!([]),
    )
    .await?;
    let injected_after = main_thread_ms(&b).await?;
    let injected_stats_after = b
        .exec("return window.extstatus.stats();", json!([]))
        .await?;
    assert_eq!(
        injected_stats_after["board"]["created"], SCALE,
        "injected updates patched tiles in place: {injected_stats_after}"
    );

    let updates = STREAM_UPDATES as f64;
    let js = |s: &Value| {
        s["live"]["handleMs"].as_f64().unwrap_or(0.0)
            + s["board"]["flushMs"].as_f64().unwrap_or(0.0)
    };
    let frames = |a: &Value, b: &Value| {
        b["board"]["flushes"].as_f64().unwrap_or(0.0)
            - a["board"]["flushes"].as_f64().unwrap_or(0.0)
    };
    let idle_cpu = delta(&idle_after, &idle_before, "ThreadTime");
    eprintln!(
        "browser: first render of {SCALE} rows: snapshot received {:.0} ms, tiles built {:.0} ms, \
         painted {:.0} ms after navigation start",
        first["snapshotAt"].as_f64().unwrap_or(0.0),
        first["domAt"].as_f64().unwrap_or(0.0),
        first["paintAt"].as_f64().unwrap_or(0.0),
    );
    eprintln!(
        "browser: idle, {stream_time:?} of ticking clocks: main thread CPU {idle_cpu:.0} ms, busy {:.0} ms",
        delta(&idle_after, &idle_before, "TaskDuration"),
    );
    for (label, m0, m1, s0, s1) in [
        (
            "through the pipeline",
            &before,
            &after,
            &stats_before,
            &stats_after,
        ),
        (
            "injected in the page",
            &injected_before,
            &injected_after,
            &injected_stats_before,
            &injected_stats_after,
        ),
    ] {
        let cpu = delta(m1, m0, "ThreadTime");
        eprintln!(
            "browser: {STREAM_UPDATES} updates at {STREAM_RATE}/s over {SCALE} tiles, {label}: main \
             thread CPU {:.2} ms per update ({cpu:.0} ms, idle share {idle_cpu:.0} ms), busy (wall) \
             {:.2} ms per update; script {:.2}, layout {:.2}, style {:.2} ms per update; page JS \
             (parse, apply, patch) {:.3} ms per update in {:.0} frames, longest patch {:.1} ms",
            (cpu - idle_cpu) / updates,
            (delta(m1, m0, "TaskDuration") - delta(&idle_after, &idle_before, "TaskDuration"))
                / updates,
            delta(m1, m0, "ScriptDuration") / updates,
            delta(m1, m0, "LayoutDuration") / updates,
            delta(m1, m0, "RecalcStyleDuration") / updates,
            (js(s1) - js(s0)) / updates,
            frames(s0, s1),
            s1["board"]["maxFlushMs"].as_f64().unwrap_or(0.0),
        );
    }

    b.close().await?;
    server.stop().await
}
