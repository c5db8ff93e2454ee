//! The simulated PBX state: hinted extensions, their devices, and what one change did.
//!
//! Pure: no IO and no clock. All randomness comes from one seeded generator, so a seed replays
//! exactly the same sequence of changes. Every change goes through [`Board::apply`], so a hint's
//! state is Asterisk's aggregate of its devices, except right after a scripted
//! [`Board::set_extension_state`], which reports exactly the state the script asked for.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cycle;
use crate::states::{DeviceState, ExtensionState, aggregate};

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
    /// The dialplan context of the hint (`Context:`).
    pub(crate) context: String,
    /// The hint's devices; the first one is the phone the call model drives.
    pub(crate) devices: Vec<Device>,
    /// The `Hint:` value: the device names joined with `&`, kept so events need no joining.
    pub(crate) hint: String,
    /// The hint's current extension state.
    pub(crate) state: ExtensionState,
}

impl Agent {
    fn new(extension: String, context: String, devices: Vec<Device>) -> Agent {
        let state = aggregate(devices.iter().map(|d| d.state));
        let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
        let hint = names.join("&");
        Agent {
            extension,
            context,
            devices,
            hint,
            state,
        }
    }
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

/// A change a script asked for, applied when the next `ExtensionStateList` is answered.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListCues {
    /// Applied just before the list is taken: the list shows them, their events precede it.
    pub(crate) before: Vec<(String, ExtensionState)>,
    /// Applied just after the list is taken: the list shows the old state, the events follow.
    pub(crate) after: Vec<(String, ExtensionState)>,
}

/// The whole simulated PBX: every agent's state plus the generator that changes it.
#[derive(Debug)]
pub(crate) struct Board {
    /// The context new hints get when a script adds them without one.
    pub(crate) default_context: String,
    /// The agents, in the order the lists report them.
    pub(crate) agents: Vec<Agent>,
    /// Counts every applied change; list snapshots carry it so sessions can order events
    /// against lists.
    pub(crate) seq: u64,
    /// Scripted changes waiting for the next `ExtensionStateList`.
    pub(crate) cues: ListCues,
    /// Queues, presence and queued calls.
    pub(crate) cc: crate::callcenter::CallCenter,
    /// The generator of the call-center script (`shift`), apart from the call cycle's so
    /// turning the script on or off does not change the cycle's changes.
    pub(crate) shift_rng: StdRng,
    rng: StdRng,
}

/// How an agent is described to [`Board::new`].
#[derive(Clone, Debug)]
pub(crate) struct AgentSpec {
    pub(crate) extension: String,
    pub(crate) context: String,
    pub(crate) devices: Vec<String>,
    pub(crate) initial: Option<Vec<DeviceState>>,
}

impl Board {
    /// Builds the board. Devices without a configured starting state get one from the seeded
    /// generator (the phone) or `NOT_INUSE` (further devices of a combined hint).
    pub(crate) fn new(default_context: String, specs: Vec<AgentSpec>, seed: u64) -> Board {
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
                            None if i == 0 => cycle::start(&mut rng),
                            None => DeviceState::NotInUse,
                        };
                        Device { name, state }
                    })
                    .collect();
                Agent::new(spec.extension, spec.context, devices)
            })
            .collect();
        Board {
            default_context,
            agents,
            seq: 0,
            cues: ListCues::default(),
            cc: crate::callcenter::CallCenter::default(),
            shift_rng: StdRng::seed_from_u64(seed ^ 0x5348_4946_5421),
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
            if self.rng.random_range(0..100) < cycle::eagerness(phone) {
                break;
            }
        }
        let from = self.agents[agent].devices[0].state;
        let to = cycle::next(&mut self.rng, from);
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

    /// Makes the hint of `extension` (the first one with that number, in any context) report
    /// `state`: its phone goes to the matching device state and the hint reports exactly
    /// `state`, even one the hint arithmetic never produces, until its devices change again.
    /// An unknown extension gets a new hint `Custom:<extension>` in the default context, which
    /// is announced whatever its state, as Asterisk announces an added hint.
    pub(crate) fn set_extension_state(&mut self, extension: &str, state: ExtensionState) -> Change {
        let device_state = state.device_state();
        let Some(agent) = self.agents.iter().position(|a| a.extension == extension) else {
            let device = Device {
                name: format!("Custom:{extension}"),
                state: device_state,
            };
            let mut agent = Agent::new(
                extension.to_owned(),
                self.default_context.clone(),
                vec![device],
            );
            agent.state = state;
            self.agents.push(agent);
            self.seq += 1;
            return Change {
                agent: self.agents.len() - 1,
                device: 0,
                device_changed: true,
                extension_changed: true,
                extension_first: true,
            };
        };
        let before = self.agents[agent].state;
        let mut change = self.apply(agent, 0, device_state, true);
        self.agents[agent].state = state;
        change.extension_changed = before != state;
        change
    }

    /// Adds a hint (after the existing ones) without any event, as a dialplan reload would.
    pub(crate) fn add(
        &mut self,
        extension: &str,
        context: &str,
        hint: &str,
        state: ExtensionState,
    ) {
        let device = Device {
            name: hint.to_owned(),
            state: state.device_state(),
        };
        let mut agent = Agent::new(extension.to_owned(), context.to_owned(), vec![device]);
        agent.state = state;
        self.agents.push(agent);
        self.seq += 1;
    }

    /// Removes every hint of `extension`. Asterisk sends no AMI event for that.
    pub(crate) fn remove(&mut self, extension: &str) {
        self.agents.retain(|a| a.extension != extension);
        self.seq += 1;
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
        self.agents
            .iter()
            .find(|a| a.extension == extension && a.context.eq_ignore_ascii_case(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::*;

    fn board(seed: u64, n: usize) -> Board {
        let specs = (0..n)
            .map(|i| AgentSpec {
                extension: format!("{}", 1001 + i),
                context: "agents".into(),
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
                cycle::transitions(from).iter().any(|t| t.0 == to),
                "{from:?} -> {to:?} is not a call-cycle step"
            );
            before[c.agent] = to;
        }
    }

    #[test]
    fn set_device_reports_what_changed() {
        let specs = vec![AgentSpec {
            extension: "1099".into(),
            context: "agents".into(),
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
            context: "agents".into(),
            devices: vec![format!("Custom:{ext}"), "Custom:shared".into()],
            initial: Some(vec![NotInUse, NotInUse]),
        };
        let mut b = Board::new("agents".into(), vec![spec("2001"), spec("2002")], 1);
        let changes = b.set_device("Custom:shared", Ringing);
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.extension_changed));
        let device_events = changes.iter().filter(|c| c.device_changed).count();
        assert_eq!(device_events, 1);
        assert!(b.agents.iter().all(|a| a.state == ExtensionState::RINGING));
    }

    #[test]
    fn scripted_extension_states_are_reported_exactly() {
        let mut b = board(1, 1);
        b.agents[0].devices[0].state = InUse;
        b.agents[0].state = ExtensionState::INUSE;
        // A code the arithmetic never gives is reported as is; the phone goes to INUSE.
        let c = b.set_extension_state("1001", ExtensionState::INUSE_ONHOLD);
        assert!(c.extension_changed && !c.device_changed);
        assert_eq!(b.agents[0].state.code(), 17);
        // The same state again changes nothing.
        let c = b.set_extension_state("1001", ExtensionState::INUSE_ONHOLD);
        assert!(!c.extension_changed && !c.device_changed);
        // Back to a real one: the aggregate agrees.
        let c = b.set_extension_state("1001", ExtensionState::ONHOLD);
        assert!(c.extension_changed && c.device_changed);
        assert_eq!(b.agents[0].devices[0].state, OnHold);
        // An unknown extension is added and announced.
        let c = b.set_extension_state("5555", ExtensionState::NOT_INUSE);
        assert!(c.extension_changed && c.device_changed);
        assert_eq!(b.agents[c.agent].hint, "Custom:5555");
        assert_eq!(b.agents[c.agent].context, "agents");
        b.remove("5555");
        assert!(b.find("5555", "agents").is_none());
    }
}
