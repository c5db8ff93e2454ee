//! The simulated PBX state: agents, their hint devices, the call-cycle model that moves them,
//! and Asterisk's hint arithmetic that turns device states into extension states.
//!
//! Pure: no IO and no clock. All randomness comes from one seeded generator, so a seed replays
//! exactly the same sequence of changes.

use domain::{DeviceState, ExtensionState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Folds the device states of one hint into its extension state, the way Asterisk does
/// (`ast_devstate_aggregate_add()` then `ast_devstate_to_extenstate()`).
///
/// A ringing device next to an in-use, busy or held one gives `InUse&Ringing`; otherwise the
/// device with the highest priority wins. An empty hint aggregates to INVALID, so Unavailable.
pub(crate) fn aggregate(devices: impl IntoIterator<Item = DeviceState>) -> ExtensionState {
    // Asterisk's `state_order[]`, indexed by device state number: the priority of each state.
    const ORDER: [u8; 9] = [1, 3, 6, 7, 0, 2, 5, 8, 4];
    let priority = |d: DeviceState| ORDER[usize::from(d.number())];
    let mut ringing = false;
    let mut in_use = false;
    let mut state = DeviceState::Invalid;
    for device in devices {
        match device {
            DeviceState::Ringing => ringing = true,
            DeviceState::InUse | DeviceState::OnHold | DeviceState::Busy => in_use = true,
            _ => {}
        }
        if ringing && in_use {
            state = DeviceState::RingInUse;
        } else if priority(device) > priority(state) {
            state = device;
        }
    }
    state.to_extension_state()
}

/// Where a phone may go next from `from`, with relative weights.
///
/// This is the call cycle: idle → ringing → talking → (hold → talking)* → idle (wrap-up), with
/// missed calls, a second call ringing while talking, do-not-disturb (busy) and phones that log
/// off (unavailable) and come back.
fn transitions(from: DeviceState) -> &'static [(DeviceState, u32)] {
    use DeviceState::*;
    match from {
        NotInUse => &[(Ringing, 80), (InUse, 6), (Busy, 7), (Unavailable, 7)],
        Ringing => &[(InUse, 85), (NotInUse, 15)],
        InUse => &[(NotInUse, 58), (OnHold, 27), (RingInUse, 15)],
        OnHold => &[(InUse, 85), (NotInUse, 15)],
        RingInUse => &[(InUse, 100)],
        Busy | Unavailable | Invalid | Unknown => &[(NotInUse, 100)],
    }
}

/// How eagerly a phone in a state is picked for the next change, in 1/100. Short states
/// (ringing) are left quickly, long ones (logged off) slowly, so the board looks like a call
/// center rather than white noise.
fn eagerness(state: DeviceState) -> u32 {
    use DeviceState::*;
    match state {
        Ringing | RingInUse => 100,
        OnHold => 50,
        NotInUse => 35,
        Busy => 30,
        InUse => 25,
        Unavailable => 8,
        Invalid | Unknown => 100,
    }
}

/// The states a phone starts in when the configuration does not say, with weights.
const START: [(DeviceState, u32); 6] = [
    (DeviceState::NotInUse, 50),
    (DeviceState::InUse, 25),
    (DeviceState::Unavailable, 10),
    (DeviceState::Ringing, 5),
    (DeviceState::OnHold, 5),
    (DeviceState::Busy, 5),
];

fn pick<T: Copy>(rng: &mut StdRng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for &(value, weight) in choices {
        if roll < weight {
            return value;
        }
        roll -= weight;
    }
    choices[choices.len() - 1].0
}

/// One device of a hint and its current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Device {
    /// The device name as it appears in `Hint:` and `Device:`, e.g. `Custom:1001`.
    pub(crate) name: String,
    /// Its current state.
    pub(crate) state: DeviceState,
}

/// One hinted extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Agent {
    /// The extension number (`Exten:`).
    pub(crate) extension: String,
    /// The hint's devices; the first one is the phone the call model drives.
    pub(crate) devices: Vec<Device>,
    /// The `Hint:` value: the device names joined with `&`, kept so events need no joining.
    pub(crate) hint: String,
    /// The hint's current extension state, always `aggregate(devices)`.
    pub(crate) state: ExtensionState,
}

/// What one change did. Either part may be absent: a device can change without the hint's
/// state changing (INVALID to UNAVAILABLE), and writing the same state again changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// Index of the agent in [`Board::agents`].
    pub(crate) agent: usize,
    /// Index of the device in that agent's devices.
    pub(crate) device: usize,
    /// Whether the device state changed (then a `DeviceStateChange` goes out).
    pub(crate) device_changed: bool,
    /// Whether the extension state changed (then an `ExtensionStatus` goes out).
    pub(crate) extension_changed: bool,
    /// Whether `ExtensionStatus` is written before `DeviceStateChange`. Asterisk does not fix
    /// this order; in the real capture the extension event came first 16 times out of 17.
    pub(crate) extension_first: bool,
}

/// The whole simulated PBX: every agent's state plus the generator that changes it.
#[derive(Debug)]
pub(crate) struct Board {
    /// The dialplan context of every hint (`Context:`).
    pub(crate) context: String,
    /// The agents, in the order the lists report them.
    pub(crate) agents: Vec<Agent>,
    /// Counts every applied change; list snapshots carry it so sessions can order events
    /// against lists.
    pub(crate) seq: u64,
    rng: StdRng,
}

/// How an agent is described to [`Board::new`].
#[derive(Clone, Debug)]
pub(crate) struct AgentSpec {
    pub(crate) extension: String,
    pub(crate) devices: Vec<String>,
    pub(crate) initial: Option<Vec<DeviceState>>,
}

impl Board {
    /// Builds the board. Devices without a configured starting state get one from the seeded
    /// generator (the phone) or `NOT_INUSE` (further devices of a combined hint).
    pub(crate) fn new(context: String, specs: Vec<AgentSpec>, seed: u64) -> Board {
        let mut rng = StdRng::seed_from_u64(seed);
        let agents = specs
            .into_iter()
            .map(|spec| {
                let devices: Vec<Device> = spec
                    .devices
                    .into_iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let state = match &spec.initial {
                            Some(states) => states.get(i).copied().unwrap_or(DeviceState::NotInUse),
                            None if i == 0 => pick(&mut rng, &START),
                            None => DeviceState::NotInUse,
                        };
                        Device { name, state }
                    })
                    .collect();
                let state = aggregate(devices.iter().map(|d| d.state));
                let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
                let hint = names.join("&");
                Agent {
                    extension: spec.extension,
                    devices,
                    hint,
                    state,
                }
            })
            .collect();
        Board {
            context,
            agents,
            seq: 0,
            rng,
        }
    }

    /// Moves one randomly chosen phone one step along its call cycle. `None` when there are
    /// no agents.
    pub(crate) fn step(&mut self) -> Option<Change> {
        if self.agents.is_empty() {
            return None;
        }
        // Rejection sampling by eagerness keeps each step O(1) on average however many agents
        // there are, which matters for load tests with thousands of extensions.
        let mut agent = 0;
        for _ in 0..64 {
            agent = self.rng.random_range(0..self.agents.len());
            let phone = self.agents[agent].devices[0].state;
            if self.rng.random_range(0..100) < eagerness(phone) {
                break;
            }
        }
        let from = self.agents[agent].devices[0].state;
        let to = pick(&mut self.rng, transitions(from));
        let extension_first = self.rng.random_range(0..17) != 0;
        Some(self.apply(agent, 0, to, extension_first))
    }

    /// Sets a device by name (without regard to case), as `Setvar DEVICE_STATE(<device>)` does,
    /// and returns one change per hint holding the device: none when no hint holds it.
    pub(crate) fn set_device(&mut self, name: &str, state: DeviceState) -> Vec<Change> {
        let mut changes: Vec<Change> = Vec::new();
        for agent in 0..self.agents.len() {
            if let Some(device) = self.agents[agent]
                .devices
                .iter()
                .position(|d| d.name.eq_ignore_ascii_case(name))
            {
                let mut change = self.apply(agent, device, state, true);
                // One device, one DeviceStateChange, however many hints hold it.
                if changes.iter().any(|c| c.device_changed) {
                    change.device_changed = false;
                }
                changes.push(change);
            }
        }
        changes
    }

    fn apply(
        &mut self,
        agent: usize,
        device: usize,
        state: DeviceState,
        extension_first: bool,
    ) -> Change {
        let a = &mut self.agents[agent];
        let device_changed = a.devices[device].state != state;
        a.devices[device].state = state;
        let new = aggregate(a.devices.iter().map(|d| d.state));
        let extension_changed = new != a.state;
        a.state = new;
        self.seq += 1;
        Change {
            agent,
            device,
            device_changed,
            extension_changed,
            extension_first,
        }
    }

    /// The agent with this extension in this context, if any.
    pub(crate) fn find(&self, extension: &str, context: &str) -> Option<&Agent> {
        if !context.eq_ignore_ascii_case(&self.context) {
            return None;
        }
        self.agents.iter().find(|a| a.extension == extension)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::*;

    /// One row of the aggregation table of the README of the real captures.
    fn check(devices: &[DeviceState], code: i32) {
        assert_eq!(
            aggregate(devices.iter().copied()).code(),
            code,
            "{devices:?}"
        );
    }

    #[test]
    fn hint_arithmetic_matches_the_captures() {
        // Single-device hint (scenario e) and combined hint 1099 (scenario e, steps 14-22).
        let rows: &[(&[DeviceState], i32)] = &[
            (&[NotInUse], 0),
            (&[InUse], 1),
            (&[Busy], 2),
            (&[Unavailable], 4),
            (&[Ringing], 8),
            (&[RingInUse], 9),
            (&[OnHold], 16),
            (&[Invalid], 4),
            (&[Unknown], 0),
            (&[InUse, NotInUse], 1),
            (&[InUse, Ringing], 9),
            (&[InUse, OnHold], 1),
            (&[OnHold, OnHold], 16),
            (&[NotInUse, OnHold], 16),
            (&[Ringing, OnHold], 9),
            (&[Busy, OnHold], 2),
            (&[NotInUse, NotInUse], 0),
            (&[], 4),
        ];
        for (devices, code) in rows {
            check(devices, *code);
        }
    }

    fn board(seed: u64, n: usize) -> Board {
        let specs = (0..n)
            .map(|i| AgentSpec {
                extension: format!("{}", 1001 + i),
                devices: vec![format!("Custom:{}", 1001 + i)],
                initial: None,
            })
            .collect();
        Board::new("agents".into(), specs, seed)
    }

    fn run(seed: u64, steps: usize) -> Vec<(usize, i32)> {
        let mut b = board(seed, 40);
        (0..steps)
            .map(|_| {
                let c = b.step().expect("agents exist");
                (c.agent, b.agents[c.agent].state.code())
            })
            .collect()
    }

    #[test]
    fn a_seed_replays_the_same_changes() {
        assert_eq!(run(7, 500), run(7, 500));
        assert_ne!(run(7, 500), run(8, 500), "different seeds should differ");
        assert_eq!(board(3, 40).agents, board(3, 40).agents);
    }

    #[test]
    fn the_model_only_produces_codes_asterisk_produces() {
        let valid = [0, 1, 2, 4, 8, 9, 16];
        let mut b = board(11, 40);
        let mut seen = std::collections::BTreeSet::new();
        for a in &b.agents {
            assert!(valid.contains(&a.state.code()), "start {:?}", a.state);
        }
        for _ in 0..20_000 {
            let c = b.step().expect("agents exist");
            let a = &b.agents[c.agent];
            assert!(valid.contains(&a.state.code()), "{:?}", a.state);
            assert_eq!(a.state, aggregate(a.devices.iter().map(|d| d.state)));
            // A single-device phone always changes its device, hence its extension state.
            assert!(c.device_changed && c.extension_changed);
            seen.insert(a.state.code());
        }
        // Every state of the cycle is visited, including the rare ones.
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), valid);
    }

    #[test]
    fn call_cycles_follow_the_transition_table() {
        let mut b = board(5, 10);
        let mut before: Vec<DeviceState> = b.agents.iter().map(|a| a.devices[0].state).collect();
        for _ in 0..5_000 {
            let c = b.step().expect("agents exist");
            let to = b.agents[c.agent].devices[0].state;
            let from = before[c.agent];
            assert!(
                transitions(from).iter().any(|t| t.0 == to),
                "{from:?} -> {to:?} is not a call-cycle step"
            );
            before[c.agent] = to;
        }
    }

    #[test]
    fn set_device_reports_what_changed() {
        let specs = vec![AgentSpec {
            extension: "1099".into(),
            devices: vec!["Custom:1099a".into(), "Custom:1099b".into()],
            initial: Some(vec![NotInUse, OnHold]),
        }];
        let mut b = Board::new("agents".into(), specs, 1);
        assert_eq!(b.agents[0].state.code(), 16);
        // NOT_INUSE again: nothing changes, but it is still a write.
        let c = b.set_device("Custom:1099a", NotInUse);
        assert!(!c[0].device_changed && !c[0].extension_changed);
        let c = b.set_device("custom:1099A", Busy);
        assert!(c[0].device_changed && c[0].extension_changed);
        assert_eq!(b.agents[0].state.code(), 2);
        assert!(b.set_device("Custom:nosuch", Busy).is_empty());
        assert_eq!(b.seq, 2);
        assert!(b.find("1099", "agents").is_some());
        assert!(b.find("1099", "default").is_none());
    }

    #[test]
    fn a_device_in_two_hints_changes_both_with_one_device_event() {
        let spec = |ext: &str| AgentSpec {
            extension: ext.into(),
            devices: vec![format!("Custom:{ext}"), "Custom:shared".into()],
            initial: Some(vec![NotInUse, NotInUse]),
        };
        let mut b = Board::new("agents".into(), vec![spec("2001"), spec("2002")], 1);
        let changes = b.set_device("Custom:shared", Ringing);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.extension_changed));
        let device_events = changes.iter().filter(|c| c.device_changed).count();
        assert_eq!(device_events, 1);
        assert!(b.agents.iter().all(|a| a.state == ExtensionState::Ringing));
    }
}
