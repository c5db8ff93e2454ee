//! End-to-end tests of the call-center state through the loopback peer (an `ami-sim`
//! simulator answering `QueueStatus`, `PresenceStateList`, `CoreShowChannels` and `QueuePause`
//! as Asterisk 20 does): membership and pause round trips (from the PBX and from the API), a
//! queued call from ringing to hang-up, a presence walk, a resync after a reconnect clearing a
//! call that ended while the link was down, a member that matches no hint, a pause that began
//! before the server started (its `paused_since` is the PBX's `LastPause`), and a PBX that
//! refuses `QueueStatus`, `PresenceStateList` or `CoreShowChannels`.

use std::time::Duration;

use ami_sim::{CallStep, Refusal};
use anyhow::Context as _;
use hub::ServerMessage;
use reqwest::Method;
use serde_json::{Value, json};
use tests::ami_peer::{AmiPeer, PeerConfig};
use tests::server::{Options, PATIENCE, Reply, StoreKind, TestServer, captured_logs, eventually};

/// The agent every test drives: hint `Custom:1001`, queue member `Local/1001@agents-ring`.
const AGENT: &str = "1001";
const AGENT_IFACE: &str = "Local/1001@agents-ring";
const ADMIN: &str = "admin-secret";

/// A peer with the captured hints and a server following it, with 1001 and 1002 stored.
async fn start(ami_actions: bool) -> anyhow::Result<(AmiPeer, TestServer)> {
    start_with(PeerConfig::default(), ami_actions).await
}

async fn start_with(
    config: PeerConfig,
    ami_actions: bool,
) -> anyhow::Result<(AmiPeer, TestServer)> {
    start_on(config, ami_actions, Options::default()).await
}

async fn start_on(
    config: PeerConfig,
    ami_actions: bool,
    base: Options,
) -> anyhow::Result<(AmiPeer, TestServer)> {
    start_prepared(config, ami_actions, base, |_| {}).await
}

/// Like [`start_on`], with `prepare` setting the PBX up before the server first connects.
async fn start_prepared(
    config: PeerConfig,
    ami_actions: bool,
    base: Options,
    prepare: impl FnOnce(&AmiPeer),
) -> anyhow::Result<(AmiPeer, TestServer)> {
    let peer = AmiPeer::start(config.clone()).await;
    prepare(&peer);
    let options = Options {
        ami: Some((peer.addr(), config.username, config.secret)),
        ami_actions,
        admin_token: Some(ADMIN.to_owned()),
        ..base
    }
    .seeded(&["1001", "1002"], "Sales");
    let server = TestServer::start(options).await?;
    // The call-center lists follow the first ExtensionStateList.
    peer.simulator()
        .wait_for_action("CoreShowChannels", 1)
        .await;
    Ok((peer, server))
}

/// Waits until `extension`'s record passes `check`, and returns it.
async fn record_until(
    s: &TestServer,
    extension: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    eventually(&format!("{extension}: {what}"), || async {
        let rec = s.record(extension).await?;
        Ok(check(&rec).then_some(rec))
    })
    .await
}

/// The PBX adds the agent to `sales`; returns the record once it shows the membership.
async fn join_sales(peer: &AmiPeer, s: &TestServer) -> anyhow::Result<Value> {
    anyhow::ensure!(peer.add_member("sales", AGENT, "Alice", false), "QueueAdd");
    record_until(s, AGENT, "in sales", |r| r["queues"][0]["queue"] == "sales").await
}

/// Seconds since the epoch, as the PBX's `LastPause` counts them.
fn unix_now() -> i64 {
    domain::now().timestamp()
}

/// An RFC 3339 time of a record (`paused_since`...) in seconds since the epoch.
fn epoch_of(v: &Value) -> anyhow::Result<i64> {
    let text = v.as_str().with_context(|| format!("not a time: {v}"))?;
    Ok(text.parse::<domain::Timestamp>()?.timestamp())
}

/// `secs` since the epoch as the record writes it (RFC 3339 UTC, milliseconds, `Z`).
fn rfc3339(secs: i64) -> anyhow::Result<String> {
    let t = domain::Timestamp::from_timestamp(secs, 0).context("epoch seconds")?;
    Ok(domain::format_rfc3339(&t))
}

/// The pause route of a record.
fn pause_path(rec: &Value) -> String {
    format!(
        "/api/extensions/{}/pause",
        rec["_id"].as_str().unwrap_or_default()
    )
}

/// `POST` to a pause route with `body`, as `token`.
async fn post_pause(
    s: &TestServer,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> anyhow::Result<Reply> {
    s.request(Method::POST, path, Some(&body), token).await
}

/// The queue named `name` in `GET /api/queues`.
async fn queue(s: &TestServer, name: &str) -> anyhow::Result<Option<Value>> {
    let r = s.get("/api/queues").await?;
    anyhow::ensure!(r.status == 200, "GET /api/queues: {} {}", r.status, r.text);
    Ok(r.json
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == name))
        .cloned())
}

#[tokio::test]
async fn membership_and_pause_round_trips() -> anyhow::Result<()> {
    let (peer, s) = start(true).await?;
    let rec = s.record(AGENT).await?;
    assert_eq!(rec["queues"], json!([]), "{rec}");
    let id = rec["_id"].as_str().unwrap_or_default().to_owned();
    let ui = s.get("/api/ui-config").await?;
    assert_eq!(ui.json["ami_actions"], true, "{}", ui.text);

    // The PBX adds the agent to a queue: one update with the membership.
    let mut ws = s.ws("").await?;
    let rec = join_sales(&peer, &s).await?;
    assert_eq!(rec["queues"][0]["paused"], false);
    assert_eq!(rec["queues"][0]["in_call"], false);
    ws.until("extension_status_updated with the membership", |m| {
        matches!(m, ServerMessage::ExtensionStatusUpdated { extension, .. }
            if extension.extension.as_str() == AGENT
                && extension.queues.first().is_some_and(|q| q.queue == "sales"))
    })
    .await?;
    let sales = queue(&s, "sales").await?.expect("sales is listed");
    assert_eq!(
        sales["members"],
        json!([{"extension": AGENT, "paused": false, "paused_reason": null,
                "paused_since": null, "in_call": false}])
    );

    // Paused by the PBX (another client), then resumed: paused since the PBX's LastPause,
    // which is now; no start once resumed (although Asterisk keeps LastPause).
    let before = unix_now();
    assert!(peer.pause(AGENT, Some("Training"), false));
    let rec = record_until(&s, AGENT, "paused for Training", |r| {
        r["queues"][0]["paused"] == true && r["queues"][0]["paused_reason"] == "Training"
    })
    .await?;
    let since = epoch_of(&rec["queues"][0]["paused_since"])?;
    assert!(
        (before..=unix_now()).contains(&since),
        "paused since {since}, paused between {before} and now: {rec}"
    );
    assert!(peer.pause(AGENT, None, false));
    let rec = record_until(&s, AGENT, "resumed", |r| r["queues"][0]["paused"] == false).await?;
    assert_eq!(rec["queues"][0]["paused_since"], Value::Null, "{rec}");

    // Paused from the API: answered with the record the PBX confirmed.
    let path = format!("/api/extensions/{id}/pause");
    let r = post_pause(&s, &path, json!({"reason": "Lunch"}), Some(ADMIN)).await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["queues"][0]["paused"], true, "{}", r.text);
    assert_eq!(r.json["queues"][0]["paused_reason"], "Lunch");
    assert!(
        peer.actions_received().iter().any(|a| a == "QueuePause"),
        "{:?}",
        peer.actions_received()
    );
    let sales = queue(&s, "sales").await?.expect("sales is listed");
    assert_eq!(sales["members"][0]["paused"], true);
    assert_eq!(sales["members"][0]["paused_reason"], "Lunch");
    assert_eq!(
        sales["members"][0]["paused_since"], r.json["queues"][0]["paused_since"],
        "{sales}"
    );
    assert!(sales["members"][0]["paused_since"].is_string(), "{sales}");
    // Paused again with another reason while paused: answered once the PBX reports the new
    // reason (it used to answer at once with the old one, which the record still held).
    for reason in ["Break", "Lunch", "Training", "Lunch"] {
        let r = post_pause(&s, &path, json!({ "reason": reason }), Some(ADMIN)).await?;
        assert_eq!(r.status, 200, "{reason}: {}", r.text);
        assert_eq!(r.json["queues"][0]["paused"], true, "{reason}: {}", r.text);
        assert_eq!(
            r.json["queues"][0]["paused_reason"], reason,
            "the answer shows the reason asked for: {}",
            r.text
        );
    }
    // Resumed in one queue by name.
    let r = s
        .request(
            Method::DELETE,
            &format!("{path}?queue=sales"),
            None,
            Some(ADMIN),
        )
        .await?;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["queues"][0]["paused"], false, "{}", r.text);

    // Refusals, each naming what is wrong.
    let rows: [(Value, Option<&str>, u16, Option<&str>); 4] = [
        (
            json!({"reason": "a\u{7}b"}),
            Some(ADMIN),
            400,
            Some("reason"),
        ),
        (
            json!({"reason": "x", "queues": "sales"}),
            Some(ADMIN),
            400,
            Some("queues"),
        ),
        (json!({"reason": "x"}), None, 401, None),
        (
            json!({"reason": "x", "queue": "billing"}),
            Some(ADMIN),
            409,
            Some("queue"),
        ),
    ];
    for (body, token, status, field) in rows {
        let r = post_pause(&s, &path, body.clone(), token).await?;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        if let Some(field) = field {
            assert!(
                r.json["error"]["fields"][field].is_string(),
                "{body}: {}",
                r.text
            );
        }
    }
    let other = s.record("1002").await?;
    let r = post_pause(&s, &pause_path(&other), json!({"reason": "x"}), Some(ADMIN)).await?;
    assert_eq!(r.status, 409, "1002 is in no queue: {}", r.text);
    let r = s
        .request(
            Method::DELETE,
            "/api/extensions/65a1b2c3d4e5f60718293a4b/pause",
            None,
            Some(ADMIN),
        )
        .await?;
    assert_eq!(r.status, 404, "{}", r.text);

    // The PBX removes the agent: the membership is gone.
    assert!(peer.remove_member("sales", AGENT, false));
    record_until(&s, AGENT, "in no queue", |r| r["queues"] == json!([])).await?;
    s.stop().await
}

#[tokio::test]
async fn pausing_needs_pbx_actions() -> anyhow::Result<()> {
    let (peer, s) = start(false).await?;
    let rec = join_sales(&peer, &s).await?;
    let path = pause_path(&rec);
    let r = post_pause(&s, &path, json!({"reason": "Lunch"}), Some(ADMIN)).await?;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("--ami-actions"), "{}", r.text);
    assert!(!peer.actions_received().iter().any(|a| a == "QueuePause"));
    let ui = s.get("/api/ui-config").await?;
    assert_eq!(ui.json["ami_actions"], false, "{}", ui.text);
    s.stop().await
}

#[tokio::test]
async fn pausing_needs_a_pbx_to_send_it_to() -> anyhow::Result<()> {
    // --ami-actions without --ami-user: nothing to pause in, so the page offers no pause
    // (it used to say ami_actions: true, and every pause then failed).
    let s = TestServer::start(
        Options {
            ami_actions: true,
            admin_token: Some(ADMIN.to_owned()),
            ..Options::default()
        }
        .seeded(&[AGENT], "Sales"),
    )
    .await?;
    let ui = s.get("/api/ui-config").await?;
    assert_eq!(ui.status, 200, "{}", ui.text);
    assert_eq!(ui.json["ami_actions"], false, "{}", ui.text);
    let rec = s.record(AGENT).await?;
    let r = post_pause(
        &s,
        &pause_path(&rec),
        json!({"reason": "Lunch"}),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("--ami-user"), "{}", r.text);
    s.stop().await
}

#[tokio::test]
async fn a_pause_the_pbx_refuses_is_503_with_its_message() -> anyhow::Result<()> {
    // A manager user without `write = agent`, although --ami-actions is on.
    let config = PeerConfig {
        write: "call,reporting".to_owned(),
        ..PeerConfig::default()
    };
    let (peer, s) = start_with(config, true).await?;
    let rec = join_sales(&peer, &s).await?;
    let path = pause_path(&rec);
    let r = post_pause(&s, &path, json!({"reason": "Lunch"}), Some(ADMIN)).await?;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("Permission denied"), "{}", r.text);
    assert_eq!(s.record(AGENT).await?["queues"][0]["paused"], false);
    s.stop().await
}

#[tokio::test]
async fn a_queued_call_from_ringing_to_hang_up() -> anyhow::Result<()> {
    a_queued_call_from_ringing_to_hang_up_on(Options::default()).await
}

/// [`a_queued_call_from_ringing_to_hang_up`] on a fresh MongoDB database (skipped without
/// `TEST_MONGODB_URI`).
#[tokio::test]
async fn a_queued_call_from_ringing_to_hang_up_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    a_queued_call_from_ringing_to_hang_up_on(base).await
}

async fn a_queued_call_from_ringing_to_hang_up_on(base: Options) -> anyhow::Result<()> {
    let (peer, s) = start_on(PeerConfig::default(), false, base).await?;
    join_sales(&peer, &s).await?;

    let call = peer.queued_call("sales", "5559876", "Customer 5559876", false);
    eventually("a caller waiting in sales", || async {
        Ok(queue(&s, "sales")
            .await?
            .filter(|q| q["calls_waiting"] == 1))
    })
    .await?;
    assert!(peer.call_step(call, CallStep::Ring(AGENT_IFACE.to_owned()), false));
    let rec = record_until(&s, AGENT, "ringing", |r| r["call"]["state"] == "ringing").await?;
    assert_eq!(rec["call"]["queue"], "sales", "{rec}");
    assert_eq!(rec["call"]["peer_number"], "5559876", "{rec}");
    assert!(peer.call_step(call, CallStep::Answer, false));
    record_until(&s, AGENT, "talking", |r| {
        r["call"]["state"] == "up" && r["queues"][0]["in_call"] == true
    })
    .await?;
    eventually("nobody waiting once answered", || async {
        Ok(queue(&s, "sales")
            .await?
            .filter(|q| q["calls_waiting"] == 0))
    })
    .await?;
    assert!(peer.call_step(call, CallStep::HangUp, false));
    let rec = record_until(&s, AGENT, "off the call", |r| {
        r["call"].is_null() && r["queues"][0]["in_call"] == false
    })
    .await?;
    assert!(rec["queues"][0]["calls_taken"].as_u64() >= Some(1), "{rec}");
    eventually("the completed call counted", || async {
        Ok(queue(&s, "sales")
            .await?
            .filter(|q| q["completed"].as_u64() >= Some(1)))
    })
    .await?;
    s.stop().await
}

#[tokio::test]
async fn a_presence_walk() -> anyhow::Result<()> {
    let (peer, s) = start(false).await?;
    // The hint gains a presence provider (as after a dialplan reload).
    peer.emit_raw(
        b"Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: 1001\r\nContext: agents\r\n\
          Hint: Custom:1001,CustomPresence:1001\r\nStatus: 0\r\nStatusText: Idle\r\n\r\n",
    );
    s.wait_for_code(AGENT, 0).await?;
    for (state, message) in [("away", "Back at 14:00"), ("dnd", ""), ("available", "")] {
        assert!(peer.set_presence(AGENT, state, message, false));
        let rec = record_until(&s, AGENT, &format!("presence {state}"), |r| {
            r["presence"]["state"] == state
        })
        .await?;
        let want = if message.is_empty() {
            Value::Null
        } else {
            json!(message)
        };
        assert_eq!(rec["presence"]["message"], want, "{rec}");
    }
    // Presence values that are not a word, or no value at all, are counted, not shown.
    peer.emit_raw(
        b"Event: PresenceStateChange\r\nPrivilege: call,all\r\nPresentity: CustomPresence:1001\r\n\
          Status: out to lunch!\r\nSubtype: \r\nMessage: \r\n\r\n",
    );
    peer.emit_raw(
        b"Event: PresenceStateChange\r\nPrivilege: call,all\r\nPresentity: CustomPresence:1001\r\n\
          Subtype: \r\nMessage: \r\n\r\n",
    );
    eventually("the malformed presences counted", || async {
        let n = s
            .metric("extstatus_callcenter_rejects_total{kind=\"malformed_presence\"}")
            .await?;
        Ok((n >= 2.0).then_some(()))
    })
    .await?;
    assert_eq!(s.record(AGENT).await?["presence"]["state"], "available");
    s.stop().await
}

#[tokio::test]
async fn a_resync_after_a_reconnect_clears_a_call_that_ended_while_down() -> anyhow::Result<()> {
    let (peer, s) = start(false).await?;
    assert!(peer.add_member("sales", AGENT, "Alice", false));
    let call = peer.queued_call("sales", "5551234", "Customer", false);
    assert!(peer.call_step(call, CallStep::Ring(AGENT_IFACE.to_owned()), false));
    assert!(peer.call_step(call, CallStep::Answer, false));
    record_until(&s, AGENT, "talking", |r| r["call"]["state"] == "up").await?;

    // The link drops; the call ends and the agent is paused while nobody listens.
    peer.refuse_connections(true);
    peer.drop_connections();
    assert!(peer.call_step(call, CallStep::HangUp, true));
    assert!(peer.pause(AGENT, Some("Coffee"), true));
    let logins = peer.logins();
    peer.refuse_connections(false);
    peer.simulator().wait_for_login(logins + 1).await;
    let rec = record_until(&s, AGENT, "call cleared by the resync", |r| {
        r["call"].is_null() && r["queues"][0]["paused"] == true
    })
    .await?;
    assert_eq!(rec["queues"][0]["paused_reason"], "Coffee", "{rec}");
    assert_eq!(rec["queues"][0]["in_call"], false, "{rec}");
    s.stop().await
}

#[tokio::test]
async fn a_member_that_matches_no_hint_is_counted_and_attached_to_nobody() -> anyhow::Result<()> {
    let (peer, s) = start(false).await?;
    assert!(peer.add_member("sales", "7777", "Ghost", false));
    join_sales(&peer, &s).await?;
    let n = s
        .metric("extstatus_callcenter_rejects_total{kind=\"unmatched_member\"}")
        .await?;
    assert!(n >= 1.0, "rejects: {n}");
    let sales = queue(&s, "sales").await?.expect("sales is listed");
    assert_eq!(
        sales["members"].as_array().map(Vec::len),
        Some(1),
        "{sales}"
    );
    // Nobody else got the ghost's membership.
    let r = s.get("/api/extensions").await?;
    for rec in r.json.as_array().into_iter().flatten() {
        if rec["extension"] != AGENT {
            assert_eq!(rec["queues"], json!([]), "{rec}");
        }
    }
    s.stop().await
}

#[tokio::test]
async fn a_pause_from_before_the_server_started_shows_since_when() -> anyhow::Result<()> {
    a_pause_from_before_the_server_started_shows_since_when_on(Options::default()).await
}

/// [`a_pause_from_before_the_server_started_shows_since_when`] on a fresh MongoDB database
/// (skipped without `TEST_MONGODB_URI`).
#[tokio::test]
async fn a_pause_from_before_the_server_started_shows_since_when_on_mongodb() -> anyhow::Result<()>
{
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    a_pause_from_before_the_server_started_shows_since_when_on(base).await
}

async fn a_pause_from_before_the_server_started_shows_since_when_on(
    base: Options,
) -> anyhow::Result<()> {
    // The agent went to lunch 12 min 34 s before the server first connected.
    let since = unix_now() - 754;
    let last_pause = u64::try_from(since)?;
    let (peer, s) = start_prepared(PeerConfig::default(), false, base.clone(), |peer| {
        assert!(peer.add_member("sales", AGENT, "Alice", true));
        assert!(peer.pause_since(AGENT, "Lunch", last_pause, true));
    })
    .await?;
    let want = rfc3339(since)?;
    let rec = record_until(&s, AGENT, "paused since the PBX's LastPause", |r| {
        r["queues"][0]["paused_since"] == want.as_str()
    })
    .await?;
    assert_eq!(rec["queues"][0]["paused_reason"], "Lunch", "{rec}");

    // Stored: a server restarted on the same (embedded) store shows the same start, and the
    // PBX's lists keep it.
    if let StoreKind::MongoDb { .. } = base.store {
        return s.stop().await;
    }
    let dir = s.stop_keeping_data().await?;
    let options = Options {
        ami: Some((peer.addr(), "monitor".to_owned(), "monitorpass".to_owned())),
        ..base
    };
    let lists = peer.actions_received().len();
    let again = TestServer::start_in(options, dir).await?;
    assert_eq!(
        again.record(AGENT).await?["queues"][0]["paused_since"],
        want.as_str()
    );
    eventually("the restarted server's call-center lists", || async {
        let asked = peer.actions_received()[lists..]
            .iter()
            .any(|a| a == "CoreShowChannels");
        Ok(asked.then_some(()))
    })
    .await?;
    let rec = again.record(AGENT).await?;
    assert_eq!(rec["queues"][0]["paused_since"], want.as_str(), "{rec}");
    again.stop().await
}

/// Options whose periodic resync runs every 300 ms, so a test sees several.
fn resyncing_often() -> Options {
    let mut timing = Options::fast_timing();
    timing.resync_interval = Duration::from_millis(300);
    Options {
        timing: Some(timing),
        ..Options::default()
    }
}

/// The PBX restarts: the link drops, `while_down` changes it silently, and the server logs in
/// again.
async fn pbx_restart(peer: &AmiPeer, while_down: impl FnOnce(&AmiPeer)) -> anyhow::Result<()> {
    let logins = peer.logins();
    peer.refuse_connections(true);
    peer.drop_connections();
    while_down(peer);
    peer.refuse_connections(false);
    tokio::time::timeout(PATIENCE, peer.simulator().wait_for_login(logins + 1))
        .await
        .context("the server logs in to the restarted PBX")
}

/// After a refusal: statuses still follow the PBX, the refused lists are named in `/readyz`
/// and `/metrics`, each refusal is logged once although every resync asks again, and the
/// server neither reconnects nor asks in a loop.
async fn refusals_are_reported_once_and_loop_nothing(
    peer: &AmiPeer,
    s: &TestServer,
    refused: &[&str],
) -> anyhow::Result<()> {
    peer.set_state(AGENT, 1);
    s.wait_for_code(AGENT, 1).await?;
    peer.set_state(AGENT, 0);
    s.wait_for_code(AGENT, 0).await?;
    for list in ["CoreShowChannels", "PresenceStateList", "QueueStatus"] {
        let want = if refused.contains(&list) { 1.0 } else { 0.0 };
        let name = format!("extstatus_ami_list_refused{{list=\"{list}\"}}");
        assert_eq!(s.metric(&name).await?, want, "{name}");
    }
    let ready = s.get("/readyz").await?;
    assert_eq!(
        ready.json["ami"]["lists_refused"],
        json!(refused),
        "{}",
        ready.text
    );
    assert_eq!(
        ready.status, 200,
        "a refused list is no reason to take the server out"
    );

    let logins = peer.logins();
    let resyncs = s.metric("extstatus_resyncs_total").await?;
    let asked = |action: &str| {
        peer.actions_received()
            .iter()
            .filter(|a| a.as_str() == action)
            .count()
    };
    let before: Vec<usize> = refused.iter().map(|a| asked(a)).collect();
    eventually("three more resyncs", || async {
        Ok((s.metric("extstatus_resyncs_total").await? >= resyncs + 3.0).then_some(()))
    })
    .await?;
    let lists = s.metric("extstatus_resyncs_total").await? - resyncs;
    for (action, before) in refused.iter().zip(before) {
        let more = asked(action) - before;
        // Asked again at each resync (the PBX may load the module), never in a loop.
        assert!(
            (1..=lists as usize + 1).contains(&more),
            "{action} asked {more} times over {lists} resyncs"
        );
        let logged = captured_logs()
            .matches(&format!("the PBX refuses {action}"))
            .count();
        assert_eq!(logged, 1, "{action} refused: logged once per connection");
    }
    assert_eq!(peer.logins(), logins, "no reconnect because of a refusal");
    Ok(())
}

#[tokio::test]
async fn a_pbx_without_app_queue_keeps_the_statuses_and_shows_no_stale_queues() -> anyhow::Result<()>
{
    let (peer, s) = start_on(PeerConfig::default(), false, resyncing_often()).await?;
    join_sales(&peer, &s).await?;
    // The PBX restarts without app_queue: the members are gone and QueueStatus is unknown.
    pbx_restart(&peer, |peer| {
        assert!(peer.remove_member("sales", AGENT, true));
        peer.refuse_action("QueueStatus", Some(Refusal::UnknownCommand));
    })
    .await?;
    // The membership from before the restart is not shown as if it were current.
    record_until(&s, AGENT, "no stale membership", |r| {
        r["queues"] == json!([])
    })
    .await?;
    refusals_are_reported_once_and_loop_nothing(&peer, &s, &["QueueStatus"]).await?;
    let r = s.get("/api/queues").await?;
    assert_eq!((r.status, r.json.clone()), (200, json!([])), "{}", r.text);
    s.stop().await
}

#[tokio::test]
async fn a_manager_user_without_reporting_rights_keeps_the_statuses_and_shows_no_stale_presence_or_call()
-> anyhow::Result<()> {
    let (peer, s) = start_prepared(PeerConfig::default(), false, resyncing_often(), |peer| {
        assert!(peer.add_presence_to_hint(AGENT));
        assert!(peer.set_presence(AGENT, "dnd", "In a meeting", true));
    })
    .await?;
    record_until(&s, AGENT, "dnd", |r| r["presence"]["state"] == "dnd").await?;
    join_sales(&peer, &s).await?;
    let call = peer.queued_call("sales", "5551234", "Customer", false);
    assert!(peer.call_step(call, CallStep::Ring(AGENT_IFACE.to_owned()), false));
    assert!(peer.call_step(call, CallStep::Answer, false));
    record_until(&s, AGENT, "talking", |r| r["call"]["state"] == "up").await?;

    // The manager user loses `call`/`reporting`/`system` write rights over a restart, while
    // the call ends and the presence changes: the lists that would say so are refused
    // exactly as Asterisk refuses them.
    pbx_restart(&peer, |peer| {
        assert!(peer.call_step(call, CallStep::HangUp, true));
        assert!(peer.set_presence(AGENT, "available", "", true));
        peer.refuse_action("PresenceStateList", Some(Refusal::PermissionDenied));
        peer.refuse_action("CoreShowChannels", Some(Refusal::PermissionDenied));
    })
    .await?;
    let rec = record_until(&s, AGENT, "no stale presence or call", |r| {
        r["presence"].is_null() && r["call"].is_null()
    })
    .await?;
    // QueueStatus is still answered: the membership stays, true.
    assert_eq!(rec["queues"][0]["queue"], "sales", "{rec}");
    assert_eq!(rec["queues"][0]["in_call"], false, "{rec}");
    refusals_are_reported_once_and_loop_nothing(
        &peer,
        &s,
        &["CoreShowChannels", "PresenceStateList"],
    )
    .await?;
    // Live presence events still count.
    assert!(peer.set_presence(AGENT, "away", "Back at 14:00", false));
    record_until(&s, AGENT, "away, from the live event", |r| {
        r["presence"]["state"] == "away"
    })
    .await?;
    s.stop().await
}

/// A hint naming a `CustomPresence:` the PBX never wrote reads presence `not_set` once the
/// lists are taken (an extension without a provider stays null); PBX text is bounded and
/// cleaned before it reaches the record (a 5000-character presence message, a caller name
/// with a line break), and a Latin-1 caller name reads as it was meant.
#[tokio::test]
async fn an_unwritten_presence_is_not_set_and_pbx_text_is_bounded() -> anyhow::Result<()> {
    let (peer, s) = start_prepared(PeerConfig::default(), false, Options::default(), |peer| {
        assert!(peer.add_presence_to_hint(AGENT));
    })
    .await?;
    let rec = record_until(&s, AGENT, "presence not_set", |r| {
        r["presence"]["state"] == "not_set"
    })
    .await?;
    assert_eq!(
        rec["presence"],
        json!({"state": "not_set", "subtype": null, "message": null})
    );
    assert!(s.record("1002").await?["presence"].is_null());

    let long = format!("Back {}", "x".repeat(5000));
    assert!(peer.set_presence(AGENT, "away", &long, false));
    let rec = record_until(&s, AGENT, "away", |r| r["presence"]["state"] == "away").await?;
    let message = rec["presence"]["message"].as_str().unwrap_or_default();
    assert_eq!(message.chars().count(), 256, "{message}");
    assert!(message.starts_with("Back xxx"));
    assert!(
        s.metric("extstatus_pbx_values_cut_total{field=\"presence_message\"}")
            .await?
            >= 1.0
    );

    // A call on the agent's phone with a caller name in Latin-1 (Asterisk passes the bytes
    // through) that also carries an escaped line break.
    peer.emit_raw(
        b"Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: 1002\r\nContext: agents\r\n\
          Hint: PJSIP/1002\r\nStatus: 1\r\nStatusText: InUse\r\n\r\n",
    );
    s.wait_for_code("1002", 1).await?;
    peer.emit_raw(
        b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/1002-0000002a\r\n\
          ChannelState: 6\r\nChannelStateDesc: Up\r\nCallerIDNum: 1002\r\nCallerIDName: Agent\r\n\
          ConnectedLineNum: 5551234\r\nConnectedLineName: M\xfcller\\nGmbH\r\n\
          Uniqueid: 1700000000.42\r\nLinkedid: 1700000000.41\r\n\r\n",
    );
    let rec = record_until(&s, "1002", "on a call", |r| !r["call"].is_null()).await?;
    assert_eq!(rec["call"]["peer_name"], "MüllerGmbH", "{rec}");
    assert_eq!(rec["call"]["peer_number"], "5551234", "{rec}");
    s.stop().await
}
