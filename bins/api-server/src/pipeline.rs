//! The AMI → domain → store → hub pipeline: one task that follows the AMI client's events and
//! keeps the stored statuses true.
//!
//! On every (re)connect it waits briefly for `FullyBooted` (a manager user without `system`
//! rights never gets one), then takes `ExtensionStateList` as the truth. Live events that arrive
//! while a list is being collected are applied at once, never held back; a list item is
//! applied only when no live `ExtensionStatus` for its extension came after it on the wire (the
//! client numbers every packet), so an older item never overwrites a newer live state. Stored
//! extensions missing from a whole list become unknown; a list cut short (fewer items than its
//! `ListItems`) only applies its items, is counted and asked for again. A list with no complete
//! answer within the action timeout is asked for again after 5 s, then 10 s, 20 s... up to
//! 5 min, each retry logged and counted. The list is repeated on a timer, after a late
//! `FullyBooted`, after a `Reload`, and after the client lost events; the status changes those
//! repeats make are counted as drift repaired. An `ExtensionStatus` whose `Status` is not a
//! number or does not fit the 32-bit `status_code`, or that lacks `Exten` or `Context`, is
//! counted in `extstatus_ami_unusable_values_total` and logged at most once a minute per field
//! (a number that is no state Asterisk defines is kept raw and shown as unknown, as
//! `docs/status-mapping.md` says).
//!
//! The call-center state (queues, presence, calls) rides on the same events: every packet the
//! [`crate::callcenter`] mapping knows feeds the shared tracker in wire order, and each
//! extension whose view changed gets one store write (after the status writes of the same
//! burst) and so one `extension_status_updated`. Nothing is written when nothing changed. At
//! start the tracker remembers what the store holds; after each `ExtensionStateList` the
//! pipeline takes `QueueStatus`, `PresenceStateList` and `CoreShowChannels`, each merged with
//! the live events around it in wire order as the status list is, and then makes every stored
//! record agree with the tracker. A PBX that refuses or does not answer one of those lists (no
//! `app_queue`, no rights) only loses that part: it is logged once per connection and status
//! tracking goes on. A refused list also empties that part of every record once (no value
//! from before stays shown as current; live events still set it) and is named in `/readyz`
//! (`ami.lists_refused`) and `/metrics` (`extstatus_ami_list_refused`). Input the tracker cannot place (unknown queue, member of no known extension, malformed
//! presence) is counted by kind in `/metrics` and logged once per kind.
//!
//! Extensions the PBX reports but the store lacks are counted and logged once each, never
//! created. While the link is down, records keep their last values; clients hear of the drop
//! only after a grace period (seconds of reconnecting are not news), and of the return once
//! the list has been applied.
//!
//! A status write the store refused (down, or too slow) is repaired by a list taken as soon as
//! the store probe finds the store answering again ([`crate::health::StoreProbe`], every
//! second), not at the next periodic resync.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ami_proto::callcenter::CallCenterEvent;
use ami_proto::client::{ClientError, ClientEvent, ClientHandle, EventListResult, Sequenced};
use ami_proto::views::{ExtensionStatus, Message};
use ami_proto::{Action, Packet};
use domain::callcenter::{
    CallCenterView, Input, ListKind, ListSnapshot, Live, RejectKind, Update, WirePos,
};
use domain::{ExtensionFilter, ExtensionNumber, HistoryEvent, Observation, Timestamp};
use hub::{Hub, PbxLink};
use store::{Repository, StatusEffect};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::callcenter::{self, CallCenter};
use crate::config::Timing;
use crate::health::{LinkStatus, StoreHealth};
use crate::metrics::{AmiFailure, Metrics, WriteCause};
use crate::writer::Writer;

/// The longest delay between two attempts at a list that keeps failing.
const LIST_RETRY_MAX: Duration = Duration::from_secs(300);

/// Unusable PBX values of one kind are logged at most once per this period (each is counted).
const UNUSABLE_LOG_EVERY: Duration = Duration::from_secs(60);

/// At most this many distinct PBX values are remembered per kind (unknown extensions logged
/// once, live statuses seen during a list), so a PBX that sends endless made-up extension
/// numbers cannot grow the pipeline's memory without bound.
const MAX_REMEMBERED: usize = 65_536;

/// At most this many events are taken from the channel right after a list arrived, before it
/// is applied (the events the client read before the list's end wait there).
const MAX_DRAIN_AFTER_LIST: usize = 8 * MAX_BURST;

/// At most this many events already waiting in the channel are handled as one burst, their
/// status observations written in one store batch (one transaction on the embedded store).
const MAX_BURST: usize = 512;

/// Status observations read but not written yet: (raw `Exten`, observation), in wire order.
type Pending = Vec<(String, Observation)>;

/// What the pipeline works with.
pub struct Pipeline {
    /// Sends actions to the AMI client.
    pub client: ClientHandle,
    /// The client's events.
    pub events: mpsc::Receiver<ClientEvent>,
    /// The store, read to find extensions missing from a list.
    pub store: Arc<dyn Repository>,
    /// Writes statuses and publishes them.
    pub writer: Writer,
    /// Where the PBX link state is announced.
    pub hub: Hub,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The link state: whether the client is logged in and since when (read from the client's
    /// watch), and where the last event time and failure are noted for `/readyz`.
    pub link: Arc<LinkStatus>,
    /// Timers.
    pub timing: Timing,
    /// Notified when a user creates an extension: the PBX may have been reporting it all
    /// along, and only a list tells its current state (Asterisk sends `ExtensionStatus` on
    /// changes only).
    pub created: Arc<Notify>,
    /// When set, only hints of this dialplan context count (`--ami-context`).
    pub context: Option<String>,
    /// The newest time the stored records were observed at ([`newest_observation`]), where
    /// the pipeline's clock starts.
    pub newest_stored: Option<Timestamp>,
    /// The call-center tracker, shared with the REST handlers.
    pub callcenter: Arc<CallCenter>,
    /// The store's health as the background probe finds it: after a failed write, a list is
    /// taken as soon as it says the store answers.
    pub store_health: watch::Receiver<StoreHealth>,
}

/// The call-center lists taken after every `ExtensionStateList`, with their actions.
const CALL_CENTER_LISTS: [(ListKind, &str); 3] = [
    (ListKind::QueueStatus, "QueueStatus"),
    (ListKind::PresenceStateList, "PresenceStateList"),
    (ListKind::CoreShowChannels, "CoreShowChannels"),
];

/// How long after a creation the list is taken, so that a burst of creations (a seeder run
/// through the API) costs one list.
const CREATED_DEBOUNCE: Duration = Duration::from_millis(250);

/// The pipeline's own state between events. Whether the link is up is not part of it: that is
/// the client's [`LinkStatus`] fact, read where it is needed.
struct State {
    /// A full list is wanted.
    resync_pending: bool,
    /// ...but not before this instant (waiting for `FullyBooted`, or backing off).
    resync_not_before: Instant,
    /// Whether a first list has been applied (later lists count drift).
    lists_applied: u64,
    /// When the link dropped, while clients have not been told yet; with the deadline of the
    /// grace period.
    drop_pending: Option<(Timestamp, Instant)>,
    /// Extensions the PBX reported that the store lacks, each logged once.
    unknown: HashSet<String>,
    /// Extensions hinted in several contexts, each logged once.
    ambiguous: HashSet<String>,
    /// The time of the last observation, so that observations applied in wire order never go
    /// back in time even when the wall clock does.
    last_at: Option<Timestamp>,
    /// Call-center views changed by the tracker and not written yet, latest per extension.
    views: BTreeMap<ExtensionNumber, CallCenterView>,
    /// Kinds of call-center input already logged as unusable.
    rejects_logged: HashSet<RejectKind>,
    /// Call-center lists the PBX refused or did not answer on this connection, each logged
    /// once (and a refused one cleared from the records once) until it answers.
    lists_missing: HashSet<ListKind>,
    /// A status write failed: the statuses are repaired by a list as soon as the store answers.
    repair: bool,
    /// While a list is being collected, live events are handled at once; this notes where on
    /// the wire each extension's latest live `ExtensionStatus` was (raw `Exten`), so a list
    /// item read before it never overwrites it.
    live_status: HashMap<String, WirePos>,
    /// Whether a list is being collected now (only then is `live_status` kept).
    collecting: bool,
    /// Live call-center inputs taken while a call-center list is collected: those after the
    /// list's response are applied again after the list, which would otherwise undo them.
    replay: Option<Vec<Live>>,
    /// The delay before the next attempt at a list that timed out or was cut short: it starts
    /// at `Timing::list_retry`, doubles with every further failure up to [`LIST_RETRY_MAX`],
    /// and starts over once a whole list arrived.
    list_retry: Duration,
    /// Where `list_retry` starts.
    list_retry_first: Duration,
    /// Unusable PBX values per (event, field): when last logged, and how many since.
    unusable_logged: HashMap<(&'static str, &'static str), (Option<Instant>, u64)>,
}

impl State {
    fn new(list_retry: Duration) -> Self {
        Self {
            resync_pending: false,
            resync_not_before: Instant::now(),
            lists_applied: 0,
            drop_pending: None,
            unknown: HashSet::new(),
            ambiguous: HashSet::new(),
            last_at: None,
            views: BTreeMap::new(),
            rejects_logged: HashSet::new(),
            lists_missing: HashSet::new(),
            repair: false,
            live_status: HashMap::new(),
            collecting: false,
            replay: None,
            list_retry,
            list_retry_first: list_retry,
            unusable_logged: HashMap::new(),
        }
    }

    /// Schedules another attempt at the lists after the current retry delay, and doubles the
    /// delay for the time after (up to [`LIST_RETRY_MAX`]). Returns the delay.
    fn retry_lists(&mut self) -> Duration {
        let delay = self.list_retry;
        self.resync_pending = true;
        self.resync_not_before = Instant::now() + delay;
        self.list_retry = (delay * 2).min(LIST_RETRY_MAX);
        delay
    }

    /// Whether a list item of `exten` read at `pos` is older than a live `ExtensionStatus`
    /// already applied for it.
    fn superseded(&self, exten: &str, pos: WirePos) -> bool {
        self.live_status.get(exten).is_some_and(|live| *live > pos)
    }

    /// The time for the next observation: now, but never before the previous one.
    fn stamp(&mut self) -> Timestamp {
        let now = domain::now();
        let at = self.last_at.map_or(now, |last| last.max(now));
        self.last_at = Some(at);
        at
    }

    /// Whether a list is wanted and may be taken now, on a link that is `connected`.
    fn resync_due(&self, now: Instant, connected: bool) -> bool {
        self.resync_pending && connected && now >= self.resync_not_before
    }
}

/// The newest time any stored record was observed at.
pub fn newest_observation(records: &[domain::Extension]) -> Option<Timestamp> {
    records
        .iter()
        .flat_map(|r| [r.last_seen, r.last_status_change])
        .flatten()
        .max()
}

impl Pipeline {
    /// Runs until `cancel` fires or the client stops.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut state = State::new(self.timing.list_retry);
        // Observations older than what the store holds are ignored, so after a restart the
        // clock must not start behind the stored times (a clock stepped back by NTP or a
        // restored VM would otherwise freeze every status until it caught up).
        state.last_at = self.newest_stored;
        if let Some(newest) = state.last_at
            && newest > domain::now()
        {
            tracing::warn!(
                newest = %domain::format_rfc3339(&newest),
                "the store holds status times later than this machine's clock; statuses are \
                 stamped with the stored time until the clock catches up"
            );
        }
        self.remember_stored().await;
        let period = self.timing.resync_interval;
        let mut timer = tokio::time::interval_at(Instant::now() + period, period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut health_open = true;
        loop {
            if state.repair && self.store_health.borrow().ok && self.link.is_connected() {
                tracing::info!("the store answers again; resyncing the statuses it missed");
                state.repair = false;
                state.resync_pending = true;
                state.resync_not_before = Instant::now();
            }
            if state.resync_due(Instant::now(), self.link.is_connected()) {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    () = self.resync(&mut state) => {}
                }
                continue;
            }
            let wait_resync = state.resync_pending && self.link.is_connected();
            let grace = state.drop_pending.map(|(_, deadline)| deadline);
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                event = self.events.recv() => match event {
                    Some(event) => self.on_burst(&mut state, event).await,
                    None => break,
                },
                () = tokio::time::sleep_until(state.resync_not_before), if wait_resync => {}
                () = sleep_until_opt(grace) => self.announce_drop(&mut state).await,
                _ = timer.tick() => {
                    if self.link.is_connected() {
                        state.resync_pending = true;
                    }
                }
                changed = self.store_health.changed(), if health_open && state.repair => {
                    health_open = changed.is_ok();
                }
                () = self.created.notified() => {
                    if self.link.is_connected() && !state.resync_pending {
                        state.resync_pending = true;
                        state.resync_not_before = Instant::now() + CREATED_DEBOUNCE;
                    }
                }
            }
        }
        tracing::debug!("pipeline stopped");
    }

    /// Handles `first` and the events already waiting behind it (at most [`MAX_BURST`]), in
    /// order, writing runs of status observations in one store batch: under a burst of
    /// events that is what lets the store keep up.
    async fn on_burst(&mut self, state: &mut State, first: ClientEvent) {
        let mut pending = Pending::new();
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(event) = next.take() {
            self.on_event(state, event, &mut pending).await;
            handled += 1;
            if handled < MAX_BURST {
                next = self.events.try_recv().ok();
            }
        }
        self.apply_pending(state, &mut pending).await;
    }

    /// Handles one client event in order. Status observations are added to `pending`; every
    /// other kind of event first writes what is pending, so the order of writes is the wire
    /// order.
    async fn on_event(&mut self, state: &mut State, event: ClientEvent, pending: &mut Pending) {
        if !matches!(event, ClientEvent::Event(_)) {
            self.apply_pending(state, pending).await;
        }
        match event {
            ClientEvent::Connected {
                generation,
                reconnected,
                banner,
            } => {
                tracing::info!(
                    generation,
                    banner = banner.as_deref().unwrap_or(""),
                    "AMI logged in"
                );
                if reconnected {
                    self.metrics.ami_reconnect();
                }
                crate::analytics::record_marker(
                    &*self.store,
                    HistoryEvent::PbxLinkUp,
                    domain::now(),
                )
                .await;
                state.resync_pending = true;
                state.resync_not_before = Instant::now() + self.timing.fully_booted_wait;
                // A new connection may be another PBX, or the same one with app_queue loaded
                // or other rights: what it refuses is found out (and logged) afresh.
                state.lists_missing.clear();
                if state.drop_pending.take().is_some() {
                    tracing::info!("AMI link back within the grace period; clients were not told");
                }
            }
            ClientEvent::Disconnected { generation, reason } => {
                let at = domain::now();
                tracing::warn!(generation, %reason, "AMI link lost; statuses keep their last known values");
                // The moment it dropped, not after the grace period: the time after it is unknown.
                crate::analytics::record_marker(&*self.store, HistoryEvent::PbxLinkDown, at).await;
                self.metrics.ami_failure(AmiFailure::LinkLost);
                self.link.set_error(&reason);
                if self.hub.pbx_link().connected && state.drop_pending.is_none() {
                    state.drop_pending = Some((at, Instant::now() + self.timing.pbx_grace));
                }
            }
            ClientEvent::ConnectFailed { reason } => {
                let failure = AmiFailure::of_attempt(&reason);
                if failure == AmiFailure::NotAmi {
                    tracing::error!(
                        %reason,
                        "the AMI peer is not an Asterisk manager; check --ami (host and port of \
                         the manager, usually 5038); retrying with backoff"
                    );
                } else {
                    tracing::warn!(%reason, "AMI connect failed; retrying with backoff");
                }
                self.metrics.ami_failure(failure);
                self.link.set_error(&reason);
            }
            ClientEvent::LoginFailed { message } => {
                // The PBX's words, bounded and without control characters: they reach logs
                // and `/readyz`.
                let message = domain::pbx_text::clean_for_log(&message, 200);
                if message.eq_ignore_ascii_case("Authentication failed") {
                    tracing::error!(%message, "AMI authentication failed; check --ami-user and --ami-secret");
                    self.metrics.ami_failure(AmiFailure::AuthFailed);
                    self.link.set_error(format!(
                        "authentication failed: login refused by the PBX ({message}); check \
                         --ami-user and --ami-secret"
                    ));
                } else {
                    tracing::error!(%message, "AMI login refused; check --ami-user and --ami-secret");
                    self.metrics.ami_failure(AmiFailure::LoginRefused);
                    self.link.set_error(format!("login refused: {message}"));
                }
            }
            ClientEvent::Event(packet) => self.on_packet(state, &packet, pending),
            ClientEvent::ProtocolError { generation, error } => {
                tracing::warn!(generation, %error, "malformed AMI packet skipped");
                self.metrics.ami_error();
            }
            ClientEvent::Lagged { dropped } => {
                tracing::warn!(dropped, "AMI events were dropped; resyncing");
                state.resync_pending = true;
            }
            other => tracing::debug!(?other, "AMI client event ignored"),
        }
    }

    /// Handles one packet that is not the answer to an action; a status observation is added
    /// to `pending`.
    fn on_packet(&mut self, state: &mut State, packet: &Sequenced<Packet>, pending: &mut Pending) {
        if let Some(name) = packet.name() {
            self.metrics.ami_event(&name);
        }
        self.link.event_at(domain::now());
        let pos = WirePos {
            generation: packet.generation,
            seq: packet.wire_seq,
        };
        match Message::classify(packet) {
            Message::ExtensionStatus(es) if !self.follows(&es.context) => {}
            Message::ExtensionStatus(es) => {
                let at = state.stamp();
                if let Some(input) = callcenter::hint_input(&es) {
                    self.track(state, pos, at, input);
                }
                if state.collecting && state.live_status.len() < MAX_REMEMBERED {
                    state.live_status.insert(es.exten.to_string(), pos);
                }
                pending.push((es.exten.into_owned(), Observation::reported(es.status, at)));
            }
            Message::FullyBooted(_) => {
                tracing::debug!("FullyBooted");
                if state.resync_pending {
                    // The wait for it is over: the list can be taken now.
                    state.resync_not_before = Instant::now();
                } else {
                    tracing::info!("Asterisk finished booting after the list was taken; resyncing");
                    state.resync_pending = true;
                }
            }
            Message::Invalid(p, e) => {
                if p.name()
                    .is_some_and(|n| n.eq_ignore_ascii_case("ExtensionStatus"))
                {
                    self.unusable_view(state, "ExtensionStatus", &e);
                } else {
                    tracing::debug!(error = %e, event = ?p.name(), "AMI event with missing or bad headers ignored");
                }
            }
            Message::Other(p) if p.name().is_some_and(|n| n.eq_ignore_ascii_case("Reload")) => {
                // A module reload may have changed the hints.
                state.resync_pending = true;
            }
            Message::Other(p) => match CallCenterEvent::classify(p) {
                Some(Ok(event)) => {
                    if let Some(input) = callcenter::to_input(&event) {
                        let at = state.stamp();
                        self.track(state, pos, at, input);
                    }
                }
                Some(Err(e)) => {
                    self.unusable_view(state, callcenter_event_name(p), &e);
                    // A presence without a usable state is the PBX's bad input like any
                    // other malformed presence: counted and logged once.
                    if p.name().is_some_and(|n| n.starts_with("Presence")) {
                        let mut update = Update::default();
                        update.rejects.insert(RejectKind::MalformedPresence, 1);
                        self.take_update(state, update);
                    }
                }
                None => {}
            },
            // DeviceStateChange is counted above; only ExtensionStatus drives status.
            _ => {}
        }
    }

    /// Feeds one live input to the tracker and keeps what it changed for the next write.
    fn track(&self, state: &mut State, pos: WirePos, at: Timestamp, input: Input) {
        let live = Live { pos, at, input };
        if let Some(replay) = &mut state.replay {
            replay.push(live.clone());
        }
        let update = self.callcenter.with(|t| t.apply(live));
        self.take_update(state, update);
    }

    /// An `ExtensionStatus` (or list item) whose fields cannot be used: counted, and logged at
    /// most once per [`UNUSABLE_LOG_EVERY`] per field with how many were ignored meanwhile.
    fn unusable_view(&self, state: &mut State, event: &'static str, e: &ami_proto::ViewError) {
        let (field, value) = match e {
            ami_proto::ViewError::InvalidNumber { header, value } => (*header, value.as_str()),
            ami_proto::ViewError::MissingHeader { header } => (*header, "(missing)"),
            _ => ("other", ""),
        };
        self.unusable(state, event, field, value);
    }

    fn unusable(&self, state: &mut State, event: &'static str, field: &'static str, value: &str) {
        self.metrics.unusable_value(event, field);
        let now = Instant::now();
        let entry = state
            .unusable_logged
            .entry((event, field))
            .or_insert((None, 0));
        entry.1 += 1;
        if entry
            .0
            .is_none_or(|last| now.duration_since(last) >= UNUSABLE_LOG_EVERY)
        {
            let ignored = entry.1;
            *entry = (Some(now), 0);
            tracing::warn!(
                event,
                field,
                value = %domain::pbx_text::clean_for_log(value, 64),
                ignored,
                "the PBX sent {event} with an unusable {field}; ignored, counted in \
                 extstatus_ami_unusable_values_total (logged at most once a minute per field)"
            );
        }
    }

    /// Keeps the views a tracker step changed, and counts (and logs once per kind) what it
    /// could not use.
    fn take_update(&self, state: &mut State, update: Update) {
        for change in update.changed {
            state.views.insert(change.extension, change.view);
        }
        for (kind, n) in update.rejects {
            self.metrics.callcenter_rejects(kind.as_str(), n);
            if state.rejects_logged.insert(kind) {
                let what = match kind {
                    RejectKind::UnknownQueue => "an event for a queue the PBX never listed",
                    RejectKind::UnmatchedMember => {
                        "a queue member (or queue call) whose StateInterface or Interface is in \
                         no extension's hint; it is attached to no agent"
                    }
                    RejectKind::MalformedPresence => "a presence whose state is not a word",
                };
                tracing::warn!(
                    kind = kind.as_str(),
                    "the PBX reported {what}; ignored, counted in \
                     extstatus_callcenter_rejects_total (logged once per kind)"
                );
            }
        }
    }

    /// Remembers what the store holds, so the tracker shows it until the PBX's lists say
    /// otherwise.
    async fn remember_stored(&self) {
        match self.store.list(&ExtensionFilter::default()).await {
            Ok(records) => self.callcenter.with(|t| {
                for r in &records {
                    t.remember(r.extension.clone(), CallCenterView::of(r));
                }
            }),
            Err(e) => {
                self.metrics.store_error(&e);
                tracing::warn!(error = %e, "could not read the stored call-center state; the PBX's lists will set it");
            }
        }
    }

    /// Writes the call-center views changed since the last write, one store write each.
    async fn write_views(&mut self, state: &mut State) {
        if state.views.is_empty() {
            return;
        }
        let views: Vec<(ExtensionNumber, CallCenterView)> =
            std::mem::take(&mut state.views).into_iter().collect();
        self.write_view_batch(views).await;
    }

    async fn write_view_batch(&mut self, views: Vec<(ExtensionNumber, CallCenterView)>) {
        let numbers: Vec<ExtensionNumber> = views.iter().map(|(n, _)| n.clone()).collect();
        let results = self.writer.set_call_centers(views).await;
        for (number, result) in numbers.iter().zip(results) {
            match result {
                Ok(_) => {}
                // The PBX knows the agent, the board does not: the status path logs those.
                Err(e) if e.is_not_found() => {
                    tracing::debug!(extension = %number, "call-center state of an extension not in the store ignored");
                }
                Err(e) => {
                    tracing::warn!(extension = %number, error = %e, "call-center write failed; the next resync repairs it");
                }
            }
        }
        self.callcenter.note_written();
    }

    /// Writes the pending observations in one batch and handles the store's answers.
    async fn apply_pending(&mut self, state: &mut State, pending: &mut Pending) {
        if pending.is_empty() {
            self.write_views(state).await;
            return;
        }
        let batch: Vec<_> = pending
            .drain(..)
            .filter_map(|(exten, obs)| match ExtensionNumber::parse(&exten) {
                Ok(number) => Some((number, obs, WriteCause::Event)),
                Err(_) => {
                    self.unknown_once(state, &exten, "not a valid extension number");
                    None
                }
            })
            .collect();
        self.write(state, batch).await;
        self.write_views(state).await;
    }

    /// Writes a batch of observations; returns how many statuses really changed.
    async fn write(
        &mut self,
        state: &mut State,
        batch: Vec<(ExtensionNumber, Observation, WriteCause)>,
    ) -> u64 {
        let numbers: Vec<ExtensionNumber> = batch.iter().map(|(n, _, _)| n.clone()).collect();
        let results = self.writer.apply_statuses(batch).await;
        let mut changed = 0;
        for (number, result) in numbers.iter().zip(results) {
            match result {
                Ok(StatusEffect::Changed { .. }) => changed += 1,
                Ok(StatusEffect::SeenOnly | StatusEffect::Ignored(_)) => {}
                Err(e) if e.is_not_found() => {
                    self.unknown_once(state, number.as_str(), "not in the store");
                }
                Err(e) => {
                    if !state.repair {
                        tracing::warn!(extension = %number, error = %e, "status write failed; resyncing as soon as the store answers");
                    }
                    state.repair = true;
                }
            }
        }
        changed
    }

    /// Whether hints of this dialplan context count.
    fn follows(&self, context: &str) -> bool {
        self.context.as_deref().is_none_or(|c| c == context)
    }

    fn unknown_once(&self, state: &mut State, exten: &str, why: &str) {
        // The PBX's text, bounded and cleaned: it is kept (once) and logged. Past
        // `MAX_REMEMBERED` distinct values a hostile PBX gets no more memory or log lines.
        let exten = domain::pbx_text::clean_for_log(exten, 32);
        if state.unknown.len() < MAX_REMEMBERED && state.unknown.insert(exten.clone()) {
            self.metrics.unknown_extension();
            tracing::info!(
                extension = %exten,
                why,
                "the PBX reports an extension the board does not track; ignored"
            );
        }
    }

    /// Sends a list action and waits for the whole list, handling the live events that arrive
    /// meanwhile at once (an `ExtensionStatus` is news whether or not a list is outstanding;
    /// a list the PBX is slow to finish must not hold it back). When the list is there, the
    /// events the client read before its end are taken from the channel too, so that every
    /// live event older than the list's end has been applied before the list is.
    async fn collect_list(
        &mut self,
        state: &mut State,
        action: Action,
    ) -> Result<EventListResult, ClientError> {
        let client = self.client.clone();
        let list = client.send_list(action);
        tokio::pin!(list);
        state.collecting = true;
        let result = loop {
            tokio::select! {
                biased;
                result = &mut list => break result,
                event = self.events.recv() => match event {
                    Some(event) => self.on_burst(state, event).await,
                    None => break (&mut list).await,
                },
            }
        };
        let mut pending = Pending::new();
        for _ in 0..MAX_DRAIN_AFTER_LIST {
            let Ok(event) = self.events.try_recv() else {
                break;
            };
            self.on_event(state, event, &mut pending).await;
        }
        self.apply_pending(state, &mut pending).await;
        state.collecting = false;
        result
    }

    /// Whether a list ended with fewer items than its `ListItems` announced: the PBX (or the
    /// path) cut it short, so it is not the whole truth. Logged and counted.
    fn cut_short(&self, list: &EventListResult, action: &'static str) -> bool {
        let got = list.items.len() as u64;
        match list.declared_items() {
            Some(declared) if declared > got => {
                self.metrics.short_list(action);
                tracing::warn!(
                    list = action,
                    declared,
                    got,
                    "{action} ended with fewer items than its ListItems; it is not taken as the \
                     whole truth (nothing missing from it is cleared) and is asked for again"
                );
                true
            }
            Some(declared) if declared < got => {
                tracing::warn!(
                    list = action,
                    declared,
                    got,
                    "{action} item count differs from ListItems"
                );
                false
            }
            _ => false,
        }
    }

    /// Takes a full `ExtensionStateList` and makes the store agree with it.
    async fn resync(&mut self, state: &mut State) {
        state.resync_pending = false;
        state.live_status.clear();
        tracing::debug!("taking ExtensionStateList");
        let result = self
            .collect_list(state, Action::extension_state_list())
            .await;
        let list = match result {
            Ok(list) => list,
            Err(e) => {
                state.live_status.clear();
                self.list_failed(state, &e).await;
                return;
            }
        };
        let short = self.cut_short(&list, "ExtensionStateList");
        let repaired = self.apply_list(state, &list, !short).await;
        state.live_status.clear();
        if short {
            let delay = state.retry_lists();
            self.metrics.list_retry();
            tracing::warn!(
                retry_in = ?delay,
                "ExtensionStateList was cut short; asking again in {delay:?}"
            );
        } else {
            state.list_retry = state.list_retry_first;
        }
        let first = state.lists_applied == 0;
        state.lists_applied += 1;
        self.metrics.resync();
        if !first {
            self.metrics.drift_repaired(repaired);
        }
        if repaired > 0 || first {
            tracing::info!(
                items = list.items.len(),
                repaired,
                "extension states resynced"
            );
        }
        self.announce_up().await;
        self.resync_call_center(state).await;
    }

    /// Takes the three call-center lists, each merged with the live events around it in wire
    /// order, then makes every stored record's call-center fields agree with the tracker (which
    /// also gives records created since their state was first reported their fields).
    async fn resync_call_center(&mut self, state: &mut State) {
        for (kind, action) in CALL_CENTER_LISTS {
            if !self.link.is_connected() {
                return;
            }
            // Live inputs are applied as they come while the list is collected; those after
            // the list's response are applied again after it (the list would undo them).
            state.replay = Some(Vec::new());
            let result = self.collect_list(state, Action::new(action)).await;
            let replay = state.replay.take().unwrap_or_default();
            let list = match result {
                Ok(list) => list,
                Err(e) => {
                    self.call_center_list_failed(state, kind, action, &e);
                    if matches!(
                        e,
                        ClientError::NotConnected
                            | ClientError::ConnectionLost(_)
                            | ClientError::Shutdown
                    ) {
                        return;
                    }
                    continue;
                }
            };
            if state.lists_missing.remove(&kind) {
                tracing::info!(list = action, "the PBX answers {action} again");
            }
            self.metrics.list_refused(action, false);
            if self.cut_short(&list, action) {
                // What is known stays (live events keep it current); the whole list is asked
                // for again.
                if !state.resync_pending {
                    let delay = state.retry_lists();
                    self.metrics.list_retry();
                    tracing::warn!(list = action, retry_in = ?delay, "asking for the lists again in {delay:?}");
                }
                continue;
            }
            let response = WirePos {
                generation: list.generation,
                seq: list.response_wire_seq,
            };
            let mut items: Vec<Input> = Vec::with_capacity(list.items.len());
            for item in &list.items {
                match CallCenterEvent::classify(item) {
                    Some(Ok(event)) => items.extend(callcenter::to_input(&event)),
                    Some(Err(e)) => self.unusable_view(state, callcenter_event_name(item), &e),
                    None => {}
                }
            }
            let snapshot = ListSnapshot {
                kind,
                response,
                at: state.stamp(),
                items,
            };
            let after: Vec<Live> = replay.into_iter().filter(|l| l.pos > response).collect();
            let update = self.callcenter.with(|t| t.resync(snapshot, after));
            self.take_update(state, update);
            self.write_views(state).await;
        }
        self.reconcile_call_center().await;
    }

    /// Writes every stored record whose call-center fields differ from the tracker's view.
    async fn reconcile_call_center(&mut self) {
        let stored = match self.store.list(&ExtensionFilter::default()).await {
            Ok(stored) => stored,
            Err(e) => {
                self.metrics.store_error(&e);
                return;
            }
        };
        let views: Vec<(ExtensionNumber, CallCenterView)> = self.callcenter.with(|t| {
            stored
                .into_iter()
                .filter_map(|r| {
                    let view = t.view(&r.extension);
                    (CallCenterView::of(&r) != view).then_some((r.extension, view))
                })
                .collect()
        });
        if !views.is_empty() {
            tracing::debug!(records = views.len(), "call-center fields repaired");
            self.write_view_batch(views).await;
        }
    }

    /// A call-center list the PBX did not give: logged once per connection (until it answers
    /// again); status tracking goes on without it. A list the PBX refuses (`Response: Error`:
    /// no `app_queue`, a manager user without the rights) also clears that part of every
    /// record once, so no value from before is shown as current, and shows in `/readyz` and
    /// `/metrics`; one that timed out keeps what is known and is asked for at the next resync.
    fn call_center_list_failed(
        &mut self,
        state: &mut State,
        kind: ListKind,
        action: &'static str,
        e: &ClientError,
    ) {
        let refused = matches!(e, ClientError::ActionFailed { .. } | ClientError::NotAList);
        if state.lists_missing.insert(kind) {
            if refused {
                tracing::warn!(
                    list = action,
                    error = %e,
                    "the PBX refuses {action} (a PBX without app_queue, or a manager user \
                     without the rights); that part of the call-center state stays empty on \
                     this connection and is set by live events only; statuses are not affected"
                );
                self.metrics.list_refused(action, true);
                let at = state.stamp();
                let update = self.callcenter.with(|t| t.list_refused(kind, at));
                self.take_update(state, update);
            } else {
                tracing::warn!(
                    list = action,
                    error = %e,
                    "the PBX did not give {action}; that part of the call-center state is not \
                     resynced until it does; statuses are not affected"
                );
            }
        } else {
            tracing::debug!(list = action, error = %e, "call-center list still not given");
        }
    }

    /// Applies the list's items and, when the list is `whole`, marks stored extensions it lacks
    /// as unknown, in one batch (one transaction on the embedded store). An item older on the
    /// wire than a live `ExtensionStatus` already applied for its extension is skipped, and an
    /// extension reported live after the list's response is not missing. Returns how many
    /// statuses changed.
    async fn apply_list(&mut self, state: &mut State, list: &EventListResult, whole: bool) -> u64 {
        let mut batch = Vec::with_capacity(list.items.len());
        // Extension number -> the context it was reported in, to notice a number hinted in
        // several contexts: its states would overwrite each other.
        let mut reported: HashMap<String, String> = HashMap::with_capacity(list.items.len());
        for item in &list.items {
            let es = match ExtensionStatus::from_packet(item) {
                Ok(es) => es,
                Err(e) => {
                    self.unusable_view(state, "ExtensionStatus", &e);
                    continue;
                }
            };
            if !self.follows(&es.context) {
                continue;
            }
            let pos = WirePos {
                generation: item.generation,
                seq: item.wire_seq,
            };
            if state.superseded(&es.exten, pos) {
                // A live event after this item already told the newer state.
                reported.insert(es.exten.to_string(), es.context.to_string());
                continue;
            }
            if let Some(first) = reported.insert(es.exten.to_string(), es.context.to_string())
                && first != es.context
                && state.ambiguous.len() < MAX_REMEMBERED
                && state.ambiguous.insert(es.exten.to_string())
            {
                let contexts = format!("{first}, {}", es.context);
                tracing::warn!(
                    extension = %domain::pbx_text::clean_for_log(&es.exten, 32),
                    contexts = %domain::pbx_text::clean_for_log(&contexts, 160),
                    "the PBX hints this extension in several contexts, so their states overwrite \
                     each other; choose one with --ami-context"
                );
            }
            match ExtensionNumber::parse(&es.exten) {
                Ok(number) => {
                    let at = state.stamp();
                    if let Some(input) = callcenter::hint_input(&es) {
                        self.track(state, pos, at, input);
                    }
                    batch.push((
                        number,
                        Observation::reported(es.status, at),
                        WriteCause::Resync,
                    ));
                }
                Err(_) => self.unknown_once(state, &es.exten, "not a valid extension number"),
            }
        }
        if !whole {
            return self.write(state, batch).await;
        }
        let response = WirePos {
            generation: list.generation,
            seq: list.response_wire_seq,
        };
        match self.store.list(&ExtensionFilter::default()).await {
            Ok(stored) => {
                let at = state.stamp();
                batch.extend(
                    stored
                        .into_iter()
                        .filter(|r| {
                            !reported.contains_key(r.extension.as_str())
                                && !state.superseded(r.extension.as_str(), response)
                        })
                        .map(|r| (r.extension, Observation::absent(at), WriteCause::Absent)),
                );
            }
            Err(e) => {
                self.metrics.store_error(&e);
                tracing::warn!(error = %e, "could not read the store to find extensions missing from the list");
            }
        }
        self.write(state, batch).await
    }

    async fn list_failed(&mut self, state: &mut State, e: &ClientError) {
        self.metrics.ami_error();
        self.link
            .set_error(format!("ExtensionStateList failed: {e}"));
        match e {
            // The next connection resyncs anyway.
            ClientError::NotConnected | ClientError::ConnectionLost(_) | ClientError::Shutdown => {
                tracing::debug!(error = %e, "list interrupted by the connection");
                return;
            }
            ClientError::Timeout(_) => {
                let delay = state.retry_lists();
                self.metrics.list_retry();
                tracing::warn!(
                    error = %e,
                    retry_in = ?delay,
                    "ExtensionStateList got no complete answer in time; asking again in {delay:?} \
                     (the delay doubles while it keeps failing, up to {LIST_RETRY_MAX:?}); live \
                     events are applied meanwhile"
                );
            }
            other => {
                // Refused (no `call`/`reporting` rights, no hints at all...): asking again at
                // once would fail the same way, so the timer decides.
                tracing::error!(error = %other, "ExtensionStateList refused; statuses cannot be resynced");
            }
        }
        // A connection that cannot list is still up (the events go on), and clients are told.
        self.announce_up().await;
    }

    /// Tells clients the link is up, if they were told it was down (or never heard it was up).
    async fn announce_up(&mut self) {
        if !self.link.is_connected() || self.hub.pbx_link().connected {
            return;
        }
        let since = self.link.since().unwrap_or_else(domain::now);
        self.writer.announce_link(PbxLink::at(true, since)).await;
        tracing::info!("PBX link announced up");
    }

    /// The grace period ran out with the link still down: tell clients.
    async fn announce_drop(&mut self, state: &mut State) {
        let Some((since, _)) = state.drop_pending.take() else {
            return;
        };
        if self.link.is_connected() || !self.hub.pbx_link().connected {
            return;
        }
        self.writer.announce_link(PbxLink::at(false, since)).await;
        tracing::warn!("PBX link announced down; the board shows last known statuses");
    }
}

/// The name of a call-center event as a metric label: one of the names
/// [`CallCenterEvent::classify`] knows (it only fails for those), so the PBX cannot grow the
/// label set.
fn callcenter_event_name(packet: &Packet) -> &'static str {
    let name = packet.name_bytes().unwrap_or_default();
    CallCenterEvent::NAMES
        .iter()
        .find(|n| name.eq_ignore_ascii_case(n.as_bytes()))
        .copied()
        .unwrap_or("other")
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_starts_at_the_newest_stored_observation() {
        let t = |s: &str| s.parse::<Timestamp>().expect("time");
        let mut a = domain::Extension::create(
            domain::RecordId::parse("65a1b2c3d4e5f60718293a4b").expect("id"),
            domain::NewExtension {
                extension: ExtensionNumber::parse("1001").expect("ext"),
                agent_name: domain::AgentName::parse("A").expect("name"),
                department: domain::Department::parse("D").expect("dept"),
                is_active: true,
            },
            t("2026-01-01T00:00:00Z"),
        );
        assert_eq!(newest_observation(std::slice::from_ref(&a)), None);
        let mut b = a.clone();
        a.last_seen = Some(t("2099-01-01T00:00:00Z"));
        b.last_status_change = Some(t("2099-06-01T00:00:00Z"));
        let newest = newest_observation(&[a, b]);
        assert_eq!(newest, Some(t("2099-06-01T00:00:00Z")));
        // Stamped from there, an observation after a restart is never older than the store.
        let mut s = State::new(Duration::from_secs(5));
        s.last_at = newest;
        assert!(s.stamp() >= t("2099-06-01T00:00:00Z"));
    }

    #[test]
    fn stamps_never_go_back() {
        let mut s = State::new(Duration::from_secs(5));
        let future = domain::now() + chrono::Duration::seconds(60);
        s.last_at = Some(future);
        assert_eq!(s.stamp(), future);
        assert!(s.stamp() >= future);
    }

    #[tokio::test(start_paused = true)]
    async fn list_retries_double_up_to_the_bound_and_start_over() {
        let mut s = State::new(Duration::from_secs(5));
        let delays: Vec<u64> = (0..9).map(|_| s.retry_lists().as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert!(s.resync_pending);
        assert!(!s.resync_due(Instant::now(), true), "not before the delay");
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(s.resync_due(Instant::now(), true));
    }

    #[test]
    fn a_live_status_supersedes_only_older_list_items() {
        let pos = |generation, seq| WirePos { generation, seq };
        let mut s = State::new(Duration::from_secs(5));
        s.live_status.insert("1001".to_owned(), pos(2, 10));
        assert!(
            s.superseded("1001", pos(2, 9)),
            "an item before the live event"
        );
        assert!(!s.superseded("1001", pos(2, 11)), "an item after it");
        assert!(
            s.superseded("1001", pos(1, 50)),
            "an item of an older connection"
        );
        assert!(!s.superseded("1002", pos(2, 1)), "another extension");
    }

    #[tokio::test(start_paused = true)]
    async fn resync_waits_for_connection_and_deadline() {
        let mut s = State::new(Duration::from_secs(5));
        s.resync_pending = true;
        assert!(
            !s.resync_due(Instant::now(), false),
            "not while disconnected"
        );
        s.resync_not_before = Instant::now() + Duration::from_secs(2);
        assert!(!s.resync_due(Instant::now(), true));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(s.resync_due(Instant::now(), true));
        assert!(!s.resync_due(Instant::now(), false));
    }
}
