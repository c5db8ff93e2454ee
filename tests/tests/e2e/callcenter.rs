//! End-to-end tests of the call-center state through the loopback peer (an `ami-sim`
//! simulator answering `QueueStatus`, `PresenceStateList`, `CoreShowChannels` and `QueuePause`
//! as Asterisk 20 does): membership and pause round trips (from the PBX and from the API), a
//! queued call from ringing to hang-up, a presence walk, a resync after a reconnect clearing a
//! call that ended while the link was down, and a member that matches no hint.

use ami_sim::CallStep;
use hub::ServerMessage;
use reqwest::Method;
use serde_json::{Value, json};
use tests::ami_peer::{AmiPeer, PeerConfig};
use tests::server::{Options, TestServer, eventually};

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
    let peer = AmiPeer::start(config.clone()).await;
    let options = Options {
        ami: Some((peer.addr(), config.username, config.secret)),
        ami_actions,
        admin_token: Some(ADMIN.to_owned()),
        ..Options::default()
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

    // The PBX adds the agent to a queue: one update with the membership.
    let mut ws = s.ws("").await?;
    assert!(peer.add_member("sales", AGENT, "Alice", false));
    let rec = record_until(&s, AGENT, "in sales", |r| {
        r["queues"][0]["queue"] == "sales"
    })
    .await?;
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
        json!([{"extension": AGENT, "paused": false, "paused_reason": null, "in_call": false}])
    );

    // Paused by the PBX (another client), then resumed.
    assert!(peer.pause(AGENT, Some("Training"), false));
    record_until(&s, AGENT, "paused for Training", |r| {
        r["queues"][0]["paused"] == true && r["queues"][0]["paused_reason"] == "Training"
    })
    .await?;
    assert!(peer.pause(AGENT, None, false));
    record_until(&s, AGENT, "resumed", |r| r["queues"][0]["paused"] == false).await?;

    // Paused from the API: answered with the record the PBX confirmed.
    let path = format!("/api/extensions/{id}/pause");
    let r = s
        .request(
            Method::POST,
            &path,
            Some(&json!({"reason": "Lunch"})),
            Some(ADMIN),
        )
        .await?;
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
    let r = s
        .request(
            Method::POST,
            &path,
            Some(&json!({"reason": "a\u{7}b"})),
            Some(ADMIN),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json["error"]["fields"]["reason"].is_string(),
        "{}",
        r.text
    );
    let r = s
        .request(
            Method::POST,
            &path,
            Some(&json!({"reason": "x", "queues": "sales"})),
            Some(ADMIN),
        )
        .await?;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.json["error"]["fields"]["queues"].is_string(),
        "{}",
        r.text
    );
    let r = s
        .request(Method::POST, &path, Some(&json!({"reason": "x"})), None)
        .await?;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = s
        .request(
            Method::POST,
            &path,
            Some(&json!({"reason": "x", "queue": "billing"})),
            Some(ADMIN),
        )
        .await?;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.json["error"]["fields"]["queue"].is_string(), "{}", r.text);
    let other = s.record("1002").await?;
    let r = s
        .request(
            Method::POST,
            &format!(
                "/api/extensions/{}/pause",
                other["_id"].as_str().unwrap_or_default()
            ),
            Some(&json!({"reason": "x"})),
            Some(ADMIN),
        )
        .await?;
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
    assert!(peer.add_member("sales", AGENT, "Alice", false));
    let rec = record_until(&s, AGENT, "in sales", |r| {
        r["queues"][0]["queue"] == "sales"
    })
    .await?;
    let path = format!(
        "/api/extensions/{}/pause",
        rec["_id"].as_str().unwrap_or_default()
    );
    let r = s
        .request(
            Method::POST,
            &path,
            Some(&json!({"reason": "Lunch"})),
            Some(ADMIN),
        )
        .await?;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("--ami-actions"), "{}", r.text);
    assert!(!peer.actions_received().iter().any(|a| a == "QueuePause"));
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
    assert!(peer.add_member("sales", AGENT, "Alice", false));
    let rec = record_until(&s, AGENT, "in sales", |r| {
        r["queues"][0]["queue"] == "sales"
    })
    .await?;
    let path = format!(
        "/api/extensions/{}/pause",
        rec["_id"].as_str().unwrap_or_default()
    );
    let r = s
        .request(
            Method::POST,
            &path,
            Some(&json!({"reason": "Lunch"})),
            Some(ADMIN),
        )
        .await?;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("Permission denied"), "{}", r.text);
    assert_eq!(s.record(AGENT).await?["queues"][0]["paused"], false);
    s.stop().await
}

#[tokio::test]
async fn a_queued_call_from_ringing_to_hang_up() -> anyhow::Result<()> {
    let (peer, s) = start(false).await?;
    assert!(peer.add_member("sales", AGENT, "Alice", false));
    record_until(&s, AGENT, "in sales", |r| {
        r["queues"][0]["queue"] == "sales"
    })
    .await?;

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
    assert!(peer.add_member("sales", AGENT, "Alice", false));
    record_until(&s, AGENT, "in sales", |r| {
        r["queues"][0]["queue"] == "sales"
    })
    .await?;
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
