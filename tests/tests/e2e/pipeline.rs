//! End-to-end tests: the AMI → store → hub pipeline against the loopback peer that replays the
//! real Asterisk captures — the initial list, every status code, a dropped and reconnected link
//! with states changed meanwhile, wire order around the list, periodic drift repair, unknown
//! extensions, and secrets kept out of the logs. The initial list and every status code also run
//! on MongoDB when `TEST_MONGODB_URI` is set.

use std::time::Duration;

use ami_sim::ListFault;
use api_server::config::Timing;
use hub::ServerMessage;
use reqwest::Method;
use serde_json::Value;
use tests::ami_peer::{AmiPeer, PeerConfig};
use tests::server::{Options, TestServer, WsClient, captured_logs, eventually, open_store};

/// The hints of the `d_state_lists` capture and their codes there.
const CAPTURED: [(&str, i64); 11] = [
    ("1010", 0),
    ("1004", 2),
    ("1005", 4),
    ("1006", 0),
    ("1007", 9),
    ("1001", 1),
    ("1002", 8),
    ("1003", 16),
    ("1008", 4),
    ("1009", 1),
    ("1099", 9),
];

fn captured_extensions() -> Vec<&'static str> {
    CAPTURED.iter().map(|(e, _)| *e).collect()
}

/// A peer with the captured user, and a server seeded with every captured extension plus
/// `2000`, which the PBX does not know.
async fn start(
    peer_config: PeerConfig,
    mut options: Options,
) -> anyhow::Result<(AmiPeer, TestServer)> {
    let peer = AmiPeer::start(peer_config.clone()).await;
    options.ami = Some((peer.addr(), peer_config.username, peer_config.secret));
    let mut seeded = captured_extensions();
    seeded.push("2000");
    let server = TestServer::start(options.seeded(&seeded, "Agents")).await?;
    Ok((peer, server))
}

/// [`start`] with the default peer and these timers.
async fn start_timed(timing: Timing) -> anyhow::Result<(AmiPeer, TestServer)> {
    start(
        PeerConfig::default(),
        Options {
            timing: Some(timing),
            ..Options::default()
        },
    )
    .await
}

/// Waits for a `pbx_link` message with this state.
async fn pbx_link(ws: &mut WsClient, connected: bool) -> anyhow::Result<ServerMessage> {
    ws.until(
        &format!("pbx_link connected={connected}"),
        |m| matches!(m, ServerMessage::PbxLink { connected: c, .. } if *c == connected),
    )
    .await
}

#[tokio::test]
async fn the_initial_list_sets_every_stored_extension() -> anyhow::Result<()> {
    the_initial_list_sets_every_stored_extension_on(Options::default()).await
}

/// [`the_initial_list_sets_every_stored_extension`] on a fresh MongoDB database (skipped without `TEST_MONGODB_URI`).
#[tokio::test]
async fn the_initial_list_sets_every_stored_extension_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    the_initial_list_sets_every_stored_extension_on(base).await
}

async fn the_initial_list_sets_every_stored_extension_on(base: Options) -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), base).await?;
    for (ext, code) in CAPTURED {
        s.wait_for_code(ext, code).await?;
    }
    let rec = s.record("1003").await?;
    assert_eq!(rec["device_state"], "ONHOLD");
    assert_eq!(rec["status"], "online");
    assert!(
        rec["last_seen"].is_string() && rec["last_status_change"].is_string(),
        "{rec}"
    );
    let rec = s.record("1005").await?;
    assert_eq!(
        (&rec["device_state"], &rec["status"]),
        (&Value::from("UNAVAILABLE"), &Value::from("offline"))
    );
    // Absent from the list: unknown, and never seen.
    let rec = s.record("2000").await?;
    assert_eq!(rec["status_code"], -1);
    assert_eq!(rec["status"], "unknown");
    assert_eq!(rec["last_seen"], Value::Null);

    // A client connecting now sees the board and a live link.
    let mut ws = s.ws("").await?;
    match ws.next().await? {
        ServerMessage::Snapshot {
            extensions,
            pbx_link,
            ..
        } => {
            assert_eq!(extensions.len(), 12);
            if !pbx_link.connected {
                self::pbx_link(&mut ws, true).await?;
            }
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    let ready = s.get("/readyz").await?.json;
    assert_eq!(ready["ami"]["connected"], true, "{ready}");
    assert!(ready["ami"]["since"].is_string());
    assert_eq!(peer.logins(), 1);
    s.stop().await
}

#[tokio::test]
async fn a_user_without_system_rights_is_not_waited_for_forever() -> anyhow::Result<()> {
    let config = PeerConfig {
        send_fully_booted: false,
        ..PeerConfig::default()
    };
    let (_peer, s) = start(config, Options::default()).await?;
    for (ext, code) in CAPTURED {
        s.wait_for_code(ext, code).await?;
    }
    s.stop().await
}

#[tokio::test]
async fn an_md5_login_works_where_plain_ones_are_refused() -> anyhow::Result<()> {
    let config = PeerConfig {
        md5: true,
        ..PeerConfig::default()
    };
    let (peer, s) = start(
        config,
        Options {
            ami_md5: true,
            ..Options::default()
        },
    )
    .await?;
    s.wait_for_code("1001", 1).await?;
    assert_eq!(peer.logins(), 1);
    assert!(
        peer.actions_received()
            .iter()
            .any(|a| a.eq_ignore_ascii_case("Challenge")),
        "{:?}",
        peer.actions_received()
    );
    s.stop().await
}

#[tokio::test]
async fn every_status_code_reaches_rest_and_websocket() -> anyhow::Result<()> {
    every_status_code_reaches_rest_and_websocket_on(Options::default()).await
}

/// [`every_status_code_reaches_rest_and_websocket`] on a fresh MongoDB database (skipped without `TEST_MONGODB_URI`).
#[tokio::test]
async fn every_status_code_reaches_rest_and_websocket_on_mongodb() -> anyhow::Result<()> {
    let Some(base) = Options::mongodb() else {
        return Ok(());
    };
    every_status_code_reaches_rest_and_websocket_on(base).await
}

async fn every_status_code_reaches_rest_and_websocket_on(base: Options) -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), base).await?;
    s.wait_for_code("1001", 1).await?;
    let mut ws = s.ws("").await?;
    ws.next().await?;
    let rows: [(i32, &str, &str); 10] = [
        (0, "NOT_INUSE", "online"),
        (-1, "UNKNOWN", "unknown"),
        (2, "BUSY", "online"),
        (4, "UNAVAILABLE", "offline"),
        (8, "RINGING", "online"),
        (9, "RINGINUSE", "online"),
        (16, "ONHOLD", "online"),
        (17, "INUSE", "online"),
        (42, "UNKNOWN", "unknown"),
        (1, "INUSE", "online"),
    ];
    for (code, device, presence) in rows {
        let before = s.record("1001").await?;
        peer.set_state("1001", code);
        let rec = s.wait_for_code("1001", i64::from(code)).await?;
        assert_eq!(rec["device_state"], device, "code {code}");
        assert_eq!(rec["status"], presence, "code {code}");
        assert_ne!(
            rec["last_status_change"], before["last_status_change"],
            "code {code}"
        );
        let msg = ws
            .until(&format!("status update to {code}"), |m| {
                matches!(m, ServerMessage::ExtensionStatusUpdated { extension, .. }
                    if extension.extension.as_str() == "1001" && extension.status_code == code)
            })
            .await?;
        let ServerMessage::ExtensionStatusUpdated { extension, .. } = msg else {
            unreachable!()
        };
        assert_eq!(extension.device_state.as_str(), device);
        assert_eq!(extension.status.as_str(), presence);
    }
    // A repeated identical state is not a change: `last_status_change` stays.
    let before = s.record("1004").await?;
    peer.emit_status_event("1004", 2);
    peer.set_state("1006", 1);
    s.wait_for_code("1006", 1).await?;
    let after = s.record("1004").await?;
    assert_eq!(after["last_status_change"], before["last_status_change"]);
    s.stop().await
}

#[tokio::test]
async fn a_dropped_link_is_announced_and_the_list_corrects_what_changed_meanwhile()
-> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    s.wait_for_code("1003", 16).await?;
    let mut ws = s.ws("").await?;
    if let ServerMessage::Snapshot { pbx_link: link, .. } = ws.next().await?
        && !link.connected
    {
        pbx_link(&mut ws, true).await?;
    }

    peer.refuse_connections(true);
    peer.drop_connections();
    let down = pbx_link(&mut ws, false).await?;
    let ServerMessage::PbxLink { since: Some(_), .. } = down else {
        panic!("a drop carries its time: {down:?}");
    };
    let ready = s.get("/readyz").await?.json;
    assert_eq!(ready["ami"]["connected"], false, "{ready}");

    // What happens on the PBX while the server cannot see it.
    peer.set_state_silently("1001", 4);
    peer.set_state_silently("1002", 0);
    peer.remove_hint("1003");
    // Records keep their last known values meanwhile.
    assert_eq!(s.record("1001").await?["status_code"], 1);
    assert_eq!(s.record("1003").await?["status_code"], 16);

    peer.refuse_connections(false);
    pbx_link(&mut ws, true).await?;
    s.wait_for_code("1001", 4).await?;
    s.wait_for_code("1002", 0).await?;
    let gone = s.wait_for_code("1003", -1).await?;
    assert_eq!(gone["status"], "unknown");
    assert_eq!(gone["device_state"], "UNKNOWN");
    assert!(peer.logins() >= 2);
    assert!(s.metric("extstatus_ami_reconnects_total").await? >= 1.0);
    assert!(s.metric("extstatus_drift_repaired_total").await? >= 3.0);
    let ready = s.get("/readyz").await?.json;
    assert_eq!(ready["ami"]["connected"], true, "{ready}");
    s.stop().await
}

#[tokio::test]
async fn a_short_drop_is_not_news() -> anyhow::Result<()> {
    let mut timing = Options::fast_timing();
    timing.pbx_grace = Duration::from_secs(60);
    let (peer, s) = start_timed(timing).await?;
    s.wait_for_code("1001", 1).await?;
    let mut ws = s.ws("").await?;
    if let ServerMessage::Snapshot { pbx_link: link, .. } = ws.next().await?
        && !link.connected
    {
        pbx_link(&mut ws, true).await?;
    }
    // A change made silently before the drop: only the list after the reconnect shows it.
    peer.set_state_silently("1002", 2);
    peer.drop_connections();
    s.wait_for_code("1002", 2).await?;
    // Everything up to the correction, in stream order: no link message among it.
    let mut seen = Vec::new();
    loop {
        let m = ws.next().await?;
        let done = matches!(&m, ServerMessage::ExtensionStatusUpdated { extension, .. }
            if extension.extension.as_str() == "1002" && extension.status_code == 2);
        seen.push(m);
        if done {
            break;
        }
    }
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMessage::PbxLink { .. })),
        "{seen:?}"
    );
    s.stop().await
}

#[tokio::test]
async fn events_around_the_list_apply_in_wire_order() -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    s.wait_for_code("1004", 2).await?;
    // On the next list: an event just before its answer (the list already shows it), and one
    // right after it (the list shows the state before it). The later one must win.
    peer.queue_event_before_next_list("1004", 0);
    peer.queue_event_after_next_list("1004", 16);
    peer.queue_event_after_next_list("1006", 8);
    peer.drop_connections();
    s.wait_for_code("1006", 8).await?;
    s.wait_for_code("1004", 16).await?;
    s.stop().await
}

#[tokio::test]
async fn the_timer_repairs_drift_and_unknown_extensions_are_counted_once() -> anyhow::Result<()> {
    let mut timing = Options::fast_timing();
    timing.resync_interval = Duration::from_millis(300);
    let (peer, s) = start_timed(timing).await?;
    s.wait_for_code("1007", 9).await?;
    // A change the server never hears of as an event.
    peer.set_state_silently("1007", 0);
    s.wait_for_code("1007", 0).await?;
    assert!(s.metric("extstatus_drift_repaired_total").await? >= 1.0);
    assert!(s.metric("extstatus_resyncs_total").await? >= 2.0);

    // The PBX knows 5555, the board does not: counted and logged once, never created.
    peer.set_state("5555", 1);
    peer.set_state("5555", 2);
    eventually("5555 counted", || async {
        Ok((s.metric("extstatus_unknown_extensions_total").await? >= 1.0).then_some(()))
    })
    .await?;
    // Let further lists report it again; it stays one.
    let lists = s.metric("extstatus_resyncs_total").await?;
    eventually("two more lists", || async {
        Ok((s.metric("extstatus_resyncs_total").await? >= lists + 2.0).then_some(()))
    })
    .await?;
    assert_eq!(s.metric("extstatus_unknown_extensions_total").await?, 1.0);
    let all = s.get("/api/extensions").await?.json;
    assert!(
        !all.as_array()
            .expect("array")
            .iter()
            .any(|e| e["extension"] == "5555"),
        "never created"
    );
    s.stop().await
}

#[tokio::test]
async fn shutdown_flushes_the_pending_last_seen() -> anyhow::Result<()> {
    let mut timing = Options::fast_timing();
    // Only the shutdown flush can write it in time.
    timing.last_seen_interval = Duration::from_secs(3600);
    let (peer, s) = start_timed(timing).await?;
    let before = s.wait_for_code("1004", 2).await?["last_seen"].clone();
    let seen = s
        .metric("extstatus_store_last_seen_coalesced_total")
        .await?;
    // The same state again: no status change, only a fresher `last_seen`.
    peer.emit_status_event("1004", 2);
    eventually("the repeated report to reach the store", || async {
        Ok((s
            .metric("extstatus_store_last_seen_coalesced_total")
            .await?
            > seen)
            .then_some(()))
    })
    .await?;
    let dir = s.stop_keeping_data().await?;
    let (store, token) = open_store(dir.path()).await?;
    let rec = store
        .get_by_extension(&domain::ExtensionNumber::parse("1004")?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("1004 missing"))?;
    token.cancel();
    assert_eq!(rec.status_code, 2);
    let stored = rec.last_seen.map(|t| domain::format_rfc3339(&t));
    assert!(
        stored.as_deref() > before.as_str(),
        "last_seen {stored:?} was not flushed (before: {before})"
    );
    Ok(())
}

#[tokio::test]
async fn secrets_never_reach_the_logs() -> anyhow::Result<()> {
    let ami_secret = "s3cr3t-ami-7d1f";
    let admin = "s3cr3t-admin-93ab";
    let viewer = "s3cr3t-viewer-41c2";
    let peer_config = PeerConfig {
        username: "watcher".into(),
        secret: ami_secret.into(),
        ..PeerConfig::default()
    };
    let (_peer, s) = start(
        peer_config,
        Options {
            admin_token: Some(admin.into()),
            viewer_token: Some(viewer.into()),
            ..Options::default()
        },
    )
    .await?;
    eventually("1001 to be listed", || async {
        let r = s
            .request(Method::GET, "/api/extensions", None, Some(viewer))
            .await?;
        Ok(r.json
            .as_array()
            .is_some_and(|a| {
                a.iter()
                    .any(|e| e["extension"] == "1001" && e["status_code"] == 1)
            })
            .then_some(()))
    })
    .await?;
    // Failed attempts too: a wrong token, a token in the query string.
    s.request(Method::POST, "/api/extensions", None, Some("wrong"))
        .await?;
    let mut ws = s.ws(&format!("?token={viewer}")).await?;
    ws.next().await?;
    ws.close().await?;
    s.stop().await?;

    let logs = captured_logs();
    // The capture works: this server's start-up and login are in it.
    assert!(
        logs.contains("AMI logged in"),
        "log capture is empty or incomplete"
    );
    assert!(logs.contains("watcher"), "the AMI user name is logged");
    for secret in [ami_secret, admin, viewer] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
    Ok(())
}

#[tokio::test]
async fn an_extension_created_later_gets_its_live_state_without_waiting_for_the_timer()
-> anyhow::Result<()> {
    // The periodic list is far away (the default 5 minutes), so only the creation can ask.
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    s.wait_for_code("1007", 9).await?;
    // The PBX knows 5556 but sends no event about it (nothing changes after the creation),
    // so only a list can tell the server its state.
    peer.set_state_silently("5556", 16);
    s.create("5556", "Late Hire", "Agents").await?;
    let rec = s.wait_for_code("5556", 16).await?;
    assert_eq!(rec["device_state"], "ONHOLD");
    assert!(rec["last_seen"].is_string(), "{rec}");
    s.stop().await
}

#[tokio::test]
async fn a_list_that_changes_nothing_still_moves_last_seen_on_the_websocket() -> anyhow::Result<()>
{
    let mut timing = Options::fast_timing();
    timing.resync_interval = Duration::from_millis(300);
    let (_peer, s) = start_timed(timing).await?;
    let first = s.wait_for_code("1001", 1).await?;
    let seen_before = first["last_seen"].as_str().unwrap_or_default().to_owned();
    let mut ws = s.ws("").await?;
    // The next lists report 1001 with the same code: only last_seen moves, and clients see it.
    let update = ws
        .until("a newer last_seen for 1001", |m| match m {
            ServerMessage::ExtensionStatusUpdated { extension, .. } => {
                extension.extension.as_str() == "1001"
                    && extension.last_seen.map(|t| domain::format_rfc3339(&t))
                        > Some(seen_before.clone())
            }
            _ => false,
        })
        .await?;
    let ServerMessage::ExtensionStatusUpdated { extension, .. } = update else {
        unreachable!()
    };
    assert_eq!(extension.status_code, 1, "the status itself did not change");
    assert_eq!(
        extension
            .last_status_change
            .map(|t| domain::format_rfc3339(&t)),
        first["last_status_change"].as_str().map(str::to_owned)
    );
    s.stop().await
}

#[tokio::test]
async fn with_a_context_chosen_other_tenants_hints_of_the_same_number_are_ignored()
-> anyhow::Result<()> {
    let peer = AmiPeer::start(PeerConfig::default()).await;
    // A second tenant's 1001, listed after ours: without a chosen context it would win.
    peer.add_hint_in_context("1001", "tenant2", 4);
    let config = PeerConfig::default();
    let options = Options {
        ami: Some((peer.addr(), config.username, config.secret)),
        ami_context: Some("agents".to_owned()),
        ..Options::default()
    };
    let s = TestServer::start(options.seeded(&captured_extensions(), "Agents")).await?;
    s.wait_for_code("1002", 8).await?;
    assert_eq!(
        s.record("1001").await?["status_code"],
        1,
        "the list kept ours"
    );
    // A live event from the other tenant is ignored too; ours still apply.
    peer.emit_raw(
        b"Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: 1001\r\nContext: tenant2\r\n\
          Hint: Custom:tenant2-1001\r\nStatus: 8\r\nStatusText: Ringing\r\n\r\n",
    );
    peer.set_state("1002", 0);
    s.wait_for_code("1002", 0).await?;
    assert_eq!(
        s.record("1001").await?["status_code"],
        1,
        "events kept ours"
    );
    s.stop().await
}

/// How many times the peer received `action`.
fn actions(peer: &AmiPeer, action: &str) -> usize {
    peer.actions_received()
        .iter()
        .filter(|a| a.eq_ignore_ascii_case(action))
        .count()
}

/// While an `ExtensionStateList` is outstanding (here: it never completes), live statuses reach
/// the board at once, not after the list; the list is asked for again with a doubling delay,
/// each retry logged and counted, until a whole one arrives.
#[tokio::test]
async fn live_statuses_flow_while_a_list_stalls_and_the_list_is_retried() -> anyhow::Result<()> {
    let timing = Timing {
        ami_action_timeout: Duration::from_secs(2),
        list_retry: Duration::from_millis(200),
        ..Options::fast_timing()
    };
    let (peer, s) = start_timed(timing).await?;
    s.wait_for_code("1005", 4).await?;
    let lists = actions(&peer, "ExtensionStateList");
    peer.fault_next_list(ListFault::Stall { items: 2 });
    peer.fault_next_list(ListFault::Stall { items: 2 });
    peer.drop_connections();
    peer.wait_for_action("ExtensionStateList", lists + 1).await;
    peer.set_state("1005", 8);
    s.wait_for_code("1005", 8).await?;
    // Applied while the list was still outstanding: its timeout (2 s) has not fired yet.
    assert_eq!(
        s.metric("extstatus_ami_list_retries_total").await?,
        0.0,
        "the live status waited for the list to time out"
    );
    // A change only a list can tell: it arrives with the third list, after two retries.
    peer.set_state_silently("1006", 16);
    s.wait_for_code("1006", 16).await?;
    assert!(actions(&peer, "ExtensionStateList") >= lists + 3);
    assert!(s.metric("extstatus_ami_list_retries_total").await? >= 2.0);
    let logs = captured_logs();
    assert!(
        logs.contains("asking again in 200ms") && logs.contains("asking again in 400ms"),
        "each retry is logged with its doubling delay"
    );
    s.stop().await
}

/// A list item that was on the wire before a live `ExtensionStatus` of the same extension
/// (the live event arrived while the list was still being collected) does not overwrite it.
#[tokio::test]
async fn a_list_item_older_than_a_live_status_does_not_overwrite_it() -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    s.wait_for_code("1004", 2).await?;
    let lists = actions(&peer, "ExtensionStateList");
    // The list's first two items (1010, 1004 = Busy) go out, then the live change of 1004,
    // then the rest of the list and its end.
    peer.fault_next_list(ListFault::Hold { items: 2 });
    peer.drop_connections();
    peer.wait_for_action("ExtensionStateList", lists + 1).await;
    peer.set_state("1004", 0);
    s.wait_for_code("1004", 0).await?;
    // A change after the list: once it shows, the list has been applied.
    peer.set_state("1006", 8);
    s.wait_for_code("1006", 8).await?;
    assert_eq!(s.record("1004").await?["status_code"], 0);
    s.stop().await
}

/// A list cut short (fewer items than its `ListItems`) applies its items, marks nothing it
/// lacks as unknown, is counted and logged, and is asked for again.
#[tokio::test]
async fn a_list_cut_short_marks_nothing_unknown_and_is_asked_again() -> anyhow::Result<()> {
    let timing = Timing {
        list_retry: Duration::from_millis(300),
        ..Options::fast_timing()
    };
    let (peer, s) = start_timed(timing).await?;
    s.wait_for_code("1099", 9).await?;
    let mut ws = s.ws("").await?;
    ws.next().await?;
    // 1008, 1009 and 1099 are the last three items: left out of the next list.
    peer.fault_next_list(ListFault::Short { missing: 3 });
    peer.set_state_silently("1001", 2);
    peer.set_state_silently("1008", 1);
    peer.drop_connections();
    let seen = ws
        .collect_until("1008 from the list asked again", |m| {
            matches!(m, ServerMessage::ExtensionStatusUpdated { extension, .. }
                if extension.extension.as_str() == "1008" && extension.status_code == 1)
        })
        .await?;
    let unknown: Vec<String> = seen
        .iter()
        .filter_map(|m| match m {
            ServerMessage::ExtensionStatusUpdated { extension, .. }
                if extension.status_code == -1 =>
            {
                Some(extension.extension.as_str().to_owned())
            }
            _ => None,
        })
        .collect();
    assert!(
        unknown.iter().all(|e| e == "2000"),
        "extensions missing from a short list were marked unknown: {unknown:?}"
    );
    s.wait_for_code("1001", 2).await?;
    assert_eq!(s.record("1099").await?["status_code"], 9);
    assert_eq!(
        s.metric("extstatus_ami_short_lists_total{list=\"ExtensionStateList\"}")
            .await?,
        1.0
    );
    assert!(s.metric("extstatus_ami_list_retries_total").await? >= 1.0);
    assert!(captured_logs().contains("ended with fewer items than its ListItems"));
    s.stop().await
}

/// An `ExtensionStatus` with a `Status` that is not a number, or too large for any state, or
/// without `Exten`, is counted by field and logged (once per field per minute), not silently
/// dropped; the board is untouched and later events still apply.
#[tokio::test]
async fn unusable_status_values_are_counted_and_logged() -> anyhow::Result<()> {
    let (peer, s) = start(PeerConfig::default(), Options::default()).await?;
    s.wait_for_code("1001", 1).await?;
    let event = |exten: &str, status: &str| {
        format!(
            "Event: ExtensionStatus\r\nPrivilege: call,all\r\nExten: {exten}\r\nContext: \
             agents\r\nHint: Custom:{exten}\r\nStatus: {status}\r\nStatusText: InUse\r\n\r\n"
        )
    };
    peer.emit_raw(event("1001", "busy\u{1b}[2J").as_bytes());
    peer.emit_raw(event("1001", "99999999999").as_bytes());
    peer.emit_raw(
        b"Event: ExtensionStatus\r\nPrivilege: call,all\r\nContext: agents\r\nStatus: 1\r\n\r\n",
    );
    // A call-center event with a header missing is counted the same way.
    peer.emit_raw(b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/1001-00000001\r\n\r\n");
    peer.set_state("1002", 0);
    s.wait_for_code("1002", 0).await?;
    assert_eq!(s.record("1001").await?["status_code"], 1);
    assert_eq!(
        s.metric("extstatus_ami_unusable_values_total{event=\"Hangup\",field=\"Uniqueid\"}")
            .await?,
        1.0
    );
    let metric = "extstatus_ami_unusable_values_total{event=\"ExtensionStatus\",field=";
    assert_eq!(s.metric(&format!("{metric}\"Status\"}}")).await?, 2.0);
    assert_eq!(s.metric(&format!("{metric}\"Exten\"}}")).await?, 1.0);
    let logs = captured_logs();
    let logged = logs
        .matches("the PBX sent ExtensionStatus with an unusable Status")
        .count();
    assert_eq!(logged, 1, "rate-limited to one line per field");
    assert!(
        !logs.contains('\u{1b}'),
        "the value is logged without control characters"
    );
    s.stop().await
}
