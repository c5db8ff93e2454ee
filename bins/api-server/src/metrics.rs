//! Counters of the whole server and their Prometheus text rendering, written by hand: the
//! format is a few lines of text and needs no crate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

/// At most this many distinct AMI event names are counted one by one; the rest count as
/// `other`, so a misbehaving peer cannot grow the metrics without bound.
const MAX_EVENT_NAMES: usize = 200;

/// Why a change was written and published: the origin of a status change, or the kind of a
/// user edit. (How many records the store really wrote is the store's own count,
/// [`store::WriteCounters`], rendered next to these.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WriteCause {
    /// A live `ExtensionStatus` event changed a status.
    Event,
    /// A full list (on connect or on the timer) changed a status.
    Resync,
    /// An extension missing from a full list became unknown.
    Absent,
    /// A user created a record.
    Create,
    /// A user edited a record.
    Update,
    /// A user deleted a record.
    Delete,
    /// The PBX changed an agent's queues, presence or call.
    CallCenter,
}

impl WriteCause {
    const ALL: [WriteCause; 7] = [
        WriteCause::Event,
        WriteCause::Resync,
        WriteCause::Absent,
        WriteCause::Create,
        WriteCause::Update,
        WriteCause::Delete,
        WriteCause::CallCenter,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Resync => "resync",
            Self::Absent => "absent",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::CallCenter => "callcenter",
        }
    }
}

/// Events per minute over a sliding window of 60 one-second buckets.
#[derive(Debug)]
struct Rate {
    /// (unix second, count) per bucket, indexed by second modulo 60.
    buckets: [(u64, u64); 60],
}

impl Default for Rate {
    fn default() -> Self {
        Self {
            buckets: [(0, 0); 60],
        }
    }
}

impl Rate {
    fn add(&mut self, second: u64) {
        let slot = &mut self.buckets[(second % 60) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += 1;
    }

    fn per_minute(&self, now: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(s, _)| now.saturating_sub(*s) < 60 && *s <= now)
            .map(|(_, n)| n)
            .sum()
    }
}

fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The server's counters. Cheap to update from any task; rendering takes a few short locks.
#[derive(Debug, Default)]
pub struct Metrics {
    ami_events: Mutex<BTreeMap<String, u64>>,
    ami_rate: Mutex<Rate>,
    ami_reconnects: AtomicU64,
    ami_errors: AtomicU64,
    changes: Mutex<BTreeMap<WriteCause, u64>>,
    store_errors: AtomicU64,
    resyncs: AtomicU64,
    drift_repaired: AtomicU64,
    unknown_extensions: AtomicU64,
    callcenter_rejects: Mutex<BTreeMap<&'static str, u64>>,
    /// Call-center lists (`QueueStatus`...) and whether the PBX refuses them now.
    lists_refused: Mutex<BTreeMap<&'static str, bool>>,
    ws_clients: AtomicI64,
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Failed AMI connection attempts and lost links, by reason ([`AmiFailure`]).
    ami_failures: Mutex<BTreeMap<AmiFailure, u64>>,
    /// PBX values that could not be used, by (event, field).
    unusable: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Lists that ended with fewer items than their `ListItems`, by list action.
    short_lists: Mutex<BTreeMap<&'static str, u64>>,
    /// `ExtensionStateList` asked again after it got no complete answer in time.
    list_retries: AtomicU64,
}

/// Why an AMI connection attempt failed or a link ended, as `/metrics` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AmiFailure {
    /// The TCP connect failed or timed out.
    Connect,
    /// The peer is not an Asterisk manager: no `Asterisk Call Manager/x.y` banner.
    NotAmi,
    /// The PBX refused the user or secret (`Authentication failed`).
    AuthFailed,
    /// The PBX refused the login for another reason (`Login Already In Use`...).
    LoginRefused,
    /// The PBX greeted but did not answer the login in time.
    LoginTimeout,
    /// A logged-in link ended (closed, keepalive, I/O error).
    LinkLost,
}

impl AmiFailure {
    const ALL: [AmiFailure; 6] = [
        AmiFailure::Connect,
        AmiFailure::NotAmi,
        AmiFailure::AuthFailed,
        AmiFailure::LoginRefused,
        AmiFailure::LoginTimeout,
        AmiFailure::LinkLost,
    ];

    /// The reason of a failed attempt (before the login was done).
    pub fn of_attempt(reason: &ami_proto::client::DisconnectReason) -> AmiFailure {
        use ami_proto::client::DisconnectReason as R;
        match reason {
            R::NotAmi(_) | R::NoBanner => AmiFailure::NotAmi,
            R::LoginTimeout => AmiFailure::LoginTimeout,
            _ => AmiFailure::Connect,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::NotAmi => "not_ami",
            Self::AuthFailed => "auth_failed",
            Self::LoginRefused => "login_refused",
            Self::LoginTimeout => "login_timeout",
            Self::LinkLost => "link_lost",
        }
    }
}

/// The PBX lists whose short answers are counted, in label order.
pub const COUNTED_LISTS: [&str; 4] = [
    "CoreShowChannels",
    "ExtensionStateList",
    "PresenceStateList",
    "QueueStatus",
];

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    // A poisoned lock only means another thread panicked while counting; the counts are still
    // usable, so counting goes on.
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    *map.entry(key).or_insert(0) += 1;
}

impl Metrics {
    /// Counts one AMI event by name.
    pub fn ami_event(&self, name: &str) {
        {
            let mut map = self.ami_events.lock().unwrap_or_else(|p| p.into_inner());
            let key = if map.contains_key(name) || map.len() < MAX_EVENT_NAMES {
                name
            } else {
                "other"
            };
            match map.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    map.insert(key.to_owned(), 1);
                }
            }
        }
        self.ami_rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(unix_second());
    }

    /// AMI events received over the last minute.
    pub fn ami_events_per_minute(&self) -> u64 {
        self.ami_rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .per_minute(unix_second())
    }

    /// Counts a reconnect of the AMI client.
    pub fn ami_reconnect(&self) {
        self.ami_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an AMI failure (a failed connect, login or action).
    pub fn ami_error(&self) {
        self.ami_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed connection attempt or a lost link by reason (also an AMI error).
    pub fn ami_failure(&self, reason: AmiFailure) {
        self.ami_error();
        bump(&self.ami_failures, reason);
    }

    /// Failed attempts and lost links of one reason so far.
    pub fn ami_failures_of(&self, reason: AmiFailure) -> u64 {
        let map = self.ami_failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&reason).copied().unwrap_or(0)
    }

    /// Counts a PBX value that could not be used: `event` names the event, `field` its header.
    pub fn unusable_value(&self, event: &'static str, field: &'static str) {
        bump(&self.unusable, (event, field));
    }

    /// Counts a list that ended with fewer items than it announced.
    pub fn short_list(&self, list: &'static str) {
        bump(&self.short_lists, list);
    }

    /// Counts an `ExtensionStateList` asked again after no complete answer came in time.
    pub fn list_retry(&self) {
        self.list_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a change the writer stored and published.
    pub fn change(&self, cause: WriteCause) {
        bump(&self.changes, cause);
    }

    /// Counts a failed store operation. A conflict or a missing record is an answer, not a
    /// failure, and is not counted.
    pub fn store_error(&self, e: &store::StoreError) {
        if !e.is_conflict() && !e.is_not_found() {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a completed full-list resync.
    pub fn resync(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts records a resync found wrong and repaired.
    pub fn drift_repaired(&self, n: u64) {
        self.drift_repaired.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts an extension the PBX knows and the store does not (once per extension).
    pub fn unknown_extension(&self) {
        self.unknown_extensions.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts call-center input from the PBX that could not be used, by kind (`unknown_queue`,
    /// `unmatched_member`, `malformed_presence`).
    pub fn callcenter_rejects(&self, kind: &'static str, n: u64) {
        let mut map = self
            .callcenter_rejects
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry(kind).or_insert(0) += n;
    }

    /// Notes whether the PBX refuses a call-center list (`QueueStatus`, `PresenceStateList`,
    /// `CoreShowChannels`) on the current connection.
    pub fn list_refused(&self, list: &'static str, refused: bool) {
        let mut map = self.lists_refused.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(list, refused);
    }

    /// The call-center lists the PBX refuses now, in name order.
    pub fn lists_refused(&self) -> Vec<&'static str> {
        let map = self.lists_refused.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().filter(|(_, r)| **r).map(|(l, _)| *l).collect()
    }

    /// The call-center rejects of one kind so far.
    pub fn callcenter_rejects_of(&self, kind: &str) -> u64 {
        self.callcenter_rejects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    /// A WebSocket client connected (`+1`) or left (`-1`).
    pub fn ws_clients_add(&self, delta: i64) {
        self.ws_clients.fetch_add(delta, Ordering::Relaxed);
    }

    /// Counts an HTTP request by route pattern, method and status.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        bump(&self.http, (route.to_owned(), method.to_owned(), status));
    }

    /// The number of connected WebSocket clients.
    pub fn ws_clients(&self) -> i64 {
        self.ws_clients.load(Ordering::Relaxed)
    }

    /// AMI failures so far.
    pub fn ami_errors(&self) -> u64 {
        self.ami_errors.load(Ordering::Relaxed)
    }

    /// AMI reconnects so far.
    pub fn ami_reconnects(&self) -> u64 {
        self.ami_reconnects.load(Ordering::Relaxed)
    }

    /// Store failures so far.
    pub fn store_errors(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }

    /// Drift repaired so far.
    pub fn drift_repaired_total(&self) -> u64 {
        self.drift_repaired.load(Ordering::Relaxed)
    }

    /// Unknown extensions seen so far.
    pub fn unknown_extensions(&self) -> u64 {
        self.unknown_extensions.load(Ordering::Relaxed)
    }

    /// Renders every counter in the Prometheus text exposition format (version 0.0.4), with
    /// the AMI link state and the store's own write counters.
    pub fn render(&self, ami_connected: bool, store: &store::WriteCounters) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        header(
            &mut out,
            "extstatus_ami_events_total",
            "counter",
            "AMI events received, by event name.",
        );
        for (name, n) in self
            .ami_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            line(
                &mut out,
                "extstatus_ami_events_total",
                &[("event", name)],
                *n,
            );
        }
        single(
            &mut out,
            "extstatus_ami_events_per_minute",
            "gauge",
            "AMI events received over the last minute.",
            self.ami_events_per_minute(),
        );
        single(
            &mut out,
            "extstatus_ami_connected",
            "gauge",
            "1 while the AMI link is up.",
            u8::from(ami_connected),
        );
        single(
            &mut out,
            "extstatus_ami_reconnects_total",
            "counter",
            "AMI reconnects after a lost link.",
            load(&self.ami_reconnects),
        );
        single(
            &mut out,
            "extstatus_ami_errors_total",
            "counter",
            "Failed AMI connects, logins and actions.",
            load(&self.ami_errors),
        );
        header(
            &mut out,
            "extstatus_ami_failures_total",
            "counter",
            "Failed AMI connection attempts and lost links, by reason: connect, not_ami (the \
             peer sent no Asterisk Call Manager banner), auth_failed, login_refused, \
             login_timeout, link_lost.",
        );
        {
            let failures = self.ami_failures.lock().unwrap_or_else(|p| p.into_inner());
            for reason in AmiFailure::ALL {
                let n = failures.get(&reason).copied().unwrap_or(0);
                line(
                    &mut out,
                    "extstatus_ami_failures_total",
                    &[("reason", reason.label())],
                    n,
                );
            }
        }
        header(
            &mut out,
            "extstatus_ami_unusable_values_total",
            "counter",
            "PBX events ignored because a field could not be used (a Status that is not a \
             32-bit number, a missing Exten or Uniqueid...), by event and field.",
        );
        {
            let unusable = self.unusable.lock().unwrap_or_else(|p| p.into_inner());
            let mut any = false;
            for ((event, field), n) in unusable.iter() {
                any = true;
                line(
                    &mut out,
                    "extstatus_ami_unusable_values_total",
                    &[("event", event), ("field", field)],
                    *n,
                );
            }
            if !any {
                line(
                    &mut out,
                    "extstatus_ami_unusable_values_total",
                    &[("event", "ExtensionStatus"), ("field", "Status")],
                    0,
                );
            }
        }
        counters_by(
            &mut out,
            "extstatus_ami_short_lists_total",
            "PBX lists that ended with fewer items than their ListItems (cut short): not taken \
             as the whole truth, asked again.",
            ("list", &COUNTED_LISTS),
            &self.short_lists,
        );
        header(
            &mut out,
            "extstatus_pbx_values_cut_total",
            "counter",
            "PBX text (caller ids, queue names, presence, channels, hints...) cut to its bound or \
             cleaned of control characters before it reached a record, by field.",
        );
        for (field, n) in domain::pbx_text::cut_counts() {
            line(
                &mut out,
                "extstatus_pbx_values_cut_total",
                &[("field", field.label())],
                n,
            );
        }
        single(
            &mut out,
            "extstatus_ami_list_retries_total",
            "counter",
            "ExtensionStateList asked again after no complete answer came in time (or it was \
             cut short), with a doubling delay.",
            load(&self.list_retries),
        );
        single(
            &mut out,
            "extstatus_resyncs_total",
            "counter",
            "Completed full ExtensionStateList resyncs.",
            load(&self.resyncs),
        );
        single(
            &mut out,
            "extstatus_drift_repaired_total",
            "counter",
            "Stored statuses a resync found wrong and repaired.",
            load(&self.drift_repaired),
        );
        single(
            &mut out,
            "extstatus_unknown_extensions_total",
            "counter",
            "Distinct extensions reported by the PBX but absent from the store.",
            load(&self.unknown_extensions),
        );

        counters_by(
            &mut out,
            "extstatus_callcenter_rejects_total",
            "Call-center input from the PBX that could not be used, by kind.",
            (
                "kind",
                &["malformed_presence", "unknown_queue", "unmatched_member"],
            ),
            &self.callcenter_rejects,
        );

        header(
            &mut out,
            "extstatus_ami_list_refused",
            "gauge",
            "1 while the PBX refuses a call-center list on this connection (no app_queue, or a \
             manager user without the rights); that part of the records stays empty.",
        );
        {
            let refused = self.lists_refused.lock().unwrap_or_else(|p| p.into_inner());
            for list in ["CoreShowChannels", "PresenceStateList", "QueueStatus"] {
                let on = refused.get(list).copied().unwrap_or(false);
                line(
                    &mut out,
                    "extstatus_ami_list_refused",
                    &[("list", list)],
                    u64::from(on),
                );
            }
        }

        header(
            &mut out,
            "extstatus_changes_total",
            "counter",
            "Changes stored and published, by cause: status changes by origin, user edits by kind.",
        );
        {
            let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            for cause in WriteCause::ALL {
                let n = changes.get(&cause).copied().unwrap_or(0);
                line(
                    &mut out,
                    "extstatus_changes_total",
                    &[("cause", cause.label())],
                    n,
                );
            }
        }
        render_store(&mut out, store);
        single(
            &mut out,
            "extstatus_store_errors_total",
            "counter",
            "Failed store operations.",
            load(&self.store_errors),
        );
        single(
            &mut out,
            "extstatus_ws_clients",
            "gauge",
            "Connected WebSocket clients.",
            self.ws_clients(),
        );

        header(
            &mut out,
            "extstatus_http_requests_total",
            "counter",
            "HTTP requests, by route pattern, method and status.",
        );
        for ((route, method, status), n) in
            self.http.lock().unwrap_or_else(|p| p.into_inner()).iter()
        {
            let status = status.to_string();
            line(
                &mut out,
                "extstatus_http_requests_total",
                &[("route", route), ("method", method), ("status", &status)],
                *n,
            );
        }
        out
    }
}

/// The store's own write counters: records it really wrote, by cause, and what the `last_seen`
/// coalescing took in and saved.
fn render_store(out: &mut String, c: &store::WriteCounters) {
    header(
        out,
        "extstatus_store_writes_total",
        "counter",
        "Records the store wrote, by cause (a status change also writes one history entry).",
    );
    for (cause, n) in [
        ("status_change", c.status_changes),
        ("user_edit", c.user_edits),
        ("last_seen", c.last_seen_records),
        ("callcenter", c.call_center_changes),
    ] {
        line(out, "extstatus_store_writes_total", &[("cause", cause)], n);
    }
    single(
        out,
        "extstatus_store_last_seen_batches_total",
        "counter",
        "Batched last_seen writes (one multi-record write each).",
        c.last_seen_batches,
    );
    single(
        out,
        "extstatus_store_last_seen_coalesced_total",
        "counter",
        "last_seen refreshes handed to the coalescing batcher; minus the last_seen writes, what \
         coalescing saved.",
        c.last_seen_coalesced,
    );
    single(
        out,
        "extstatus_store_durable_commits_total",
        "counter",
        "Durable (fsynced) commits of the embedded store: user edits, health pings not covered by \
         a recent one, and at most one a second for the soft commits of statuses and call-center \
         views (0 on MongoDB).",
        c.durable_commits,
    );
    single(
        out,
        "extstatus_store_commits_total",
        "counter",
        "Commits of the embedded store, durable or not; status changes share one every 50 ms \
         at most (0 on MongoDB).",
        c.commits,
    );
}

/// Appends the hub's counters (publishing, lag resyncs, resumes) to a rendering.
pub fn render_hub(out: &mut String, hub: &hub::HubMetrics) {
    single(
        out,
        "extstatus_hub_published_total",
        "counter",
        "Changes published to WebSocket subscribers.",
        hub.published,
    );
    single(
        out,
        "extstatus_hub_subscribers",
        "gauge",
        "Live hub subscriptions.",
        hub.subscribers,
    );
    single(
        out,
        "extstatus_ws_lag_resyncs_total",
        "counter",
        "WebSocket clients that fell behind and were sent a fresh snapshot.",
        hub.lag_resyncs,
    );
    header(
        out,
        "extstatus_ws_resumes_total",
        "counter",
        "WebSocket resumes, by outcome.",
    );
    line(
        out,
        "extstatus_ws_resumes_total",
        &[("outcome", "changes")],
        hub.resumes_from_ring,
    );
    line(
        out,
        "extstatus_ws_resumes_total",
        &[("outcome", "snapshot")],
        hub.resumes_with_snapshot,
    );
    single(
        out,
        "extstatus_hub_last_seq",
        "gauge",
        "The sequence number of the latest change.",
        hub.last_seq,
    );
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends the cluster's figures (several instances on MongoDB only).
pub fn render_cluster(out: &mut String, c: &crate::cluster::ClusterReport) {
    header(
        out,
        "extstatus_cluster_lease_holder",
        "gauge",
        "1 while this instance holds the AMI lease (runs the PBX link), else 0.",
    );
    line(
        out,
        "extstatus_cluster_lease_holder",
        &[
            ("instance", &c.instance),
            ("holder", c.holder_id.as_deref().unwrap_or("")),
        ],
        u64::from(c.holder),
    );
    single(
        out,
        "extstatus_cluster_log_lag",
        "gauge",
        "Change-log entries this instance has not published yet (read every second).",
        c.lag,
    );
    single(
        out,
        "extstatus_cluster_log_last_seq",
        "gauge",
        "The last change-log number this instance published.",
        c.last_seq,
    );
    single(
        out,
        "extstatus_cluster_log_poll_errors_total",
        "counter",
        "Failed reads of the change log.",
        c.poll_errors,
    );
    single(
        out,
        "extstatus_cluster_log_append_errors_total",
        "counter",
        "Appends to the change log that failed after retries.",
        c.append_errors,
    );
    single(
        out,
        "extstatus_cluster_fenced_changes_total",
        "counter",
        "PBX changes not appended because this instance's lease had run out.",
        c.fenced_changes,
    );
    single(
        out,
        "extstatus_cluster_takeovers_total",
        "counter",
        "Times this instance took the AMI lease.",
        c.takeovers,
    );
    single(
        out,
        "extstatus_cluster_log_holes_total",
        "counter",
        "Holes found in the change log (every client of this instance resynced).",
        c.holes,
    );
}

/// A counter with one label: a line for each of `values` (0 for one never counted), from the
/// counts in `counts`.
fn counters_by(
    out: &mut String,
    name: &str,
    help: &str,
    (label, values): (&str, &[&str]),
    counts: &Mutex<BTreeMap<&'static str, u64>>,
) {
    header(out, name, "counter", help);
    let counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    for value in values {
        let n = counts.get(value).copied().unwrap_or(0);
        line(out, name, &[(label, value)], n);
    }
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(out, v);
        out.push('"');
    }
    let _ = writeln!(out, "}} {value}");
}

/// Escapes a label value as the text format requires: backslash, double quote and line feed.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The middleware counting HTTP requests by the route pattern that matched (so ids do not
/// become labels), the method and the status.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = method_label(req.method());
    // The pattern is looked up before the inner services run, so that requests refused
    // before routing (a missing token) still count under their route.
    let route = req.match_pattern();
    let res = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &res {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        let route = route.unwrap_or_else(|| "unmatched".to_owned());
        metrics.http_request(&route, method, status);
    }
    res
}

/// The method as a label: the standard ones by name, any other (a client may send any token
/// as a method) as `other`, so a client cannot add series to `/metrics` without end.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.ami_event("ExtensionStatus");
        m.ami_event("ExtensionStatus");
        m.ami_event("Dev\"ice\n");
        m.change(WriteCause::Event);
        m.http_request("/api/extensions/{id}", "GET", 404);
        m.ws_clients_add(2);
        m.ws_clients_add(-1);
        let store = store::WriteCounters {
            status_changes: 3,
            last_seen_batches: 2,
            last_seen_records: 5,
            last_seen_coalesced: 40,
            user_edits: 7,
            call_center_changes: 4,
            durable_commits: 6,
            commits: 9,
        };
        m.callcenter_rejects("unmatched_member", 2);
        m.change(WriteCause::CallCenter);
        let text = m.render(false, &store);
        for want in [
            "extstatus_ami_events_total{event=\"ExtensionStatus\"} 2\n",
            "extstatus_ami_events_total{event=\"Dev\\\"ice\\n\"} 1\n",
            "extstatus_changes_total{cause=\"event\"} 1\n",
            "extstatus_changes_total{cause=\"delete\"} 0\n",
            "extstatus_store_writes_total{cause=\"status_change\"} 3\n",
            "extstatus_store_writes_total{cause=\"user_edit\"} 7\n",
            "extstatus_store_writes_total{cause=\"last_seen\"} 5\n",
            "extstatus_store_writes_total{cause=\"callcenter\"} 4\n",
            "extstatus_store_durable_commits_total 6\n",
            "extstatus_store_commits_total 9\n",
            "extstatus_changes_total{cause=\"callcenter\"} 1\n",
            "extstatus_callcenter_rejects_total{kind=\"unmatched_member\"} 2\n",
            "extstatus_callcenter_rejects_total{kind=\"unknown_queue\"} 0\n",
            "extstatus_store_last_seen_batches_total 2\n",
            "extstatus_store_last_seen_coalesced_total 40\n",
            "extstatus_http_requests_total{route=\"/api/extensions/{id}\",method=\"GET\",status=\"404\"} 1\n",
            "extstatus_ws_clients 1\n",
            "extstatus_ami_events_per_minute 3\n",
            "# TYPE extstatus_ws_clients gauge\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        // Every sample line belongs to a declared metric.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().expect("name");
            assert!(text.contains(&format!("# TYPE {name} ")), "{l}");
        }
    }

    #[test]
    fn event_names_are_capped() {
        let m = Metrics::default();
        for i in 0..(MAX_EVENT_NAMES + 10) {
            m.ami_event(&format!("E{i}"));
        }
        let text = m.render(false, &store::WriteCounters::default());
        assert!(text.contains("extstatus_ami_events_total{event=\"other\"} 10\n"));
    }

    #[test]
    fn rate_window_slides() {
        let mut r = Rate::default();
        r.add(100);
        r.add(100);
        r.add(130);
        assert_eq!(r.per_minute(130), 3);
        assert_eq!(r.per_minute(159), 3);
        assert_eq!(r.per_minute(160), 1);
        r.add(160);
        assert_eq!(r.per_minute(160), 2);
        assert_eq!(r.per_minute(300), 0);
    }
}
