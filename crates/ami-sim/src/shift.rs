//! The call-center script: what happens next in the queues of the demo. Pure; all randomness
//! comes from the generator the caller passes, so a seed replays the same shift.
//!
//! Customers call in with their numbers and names, wait, are offered to an idle member (who
//! answers or lets it ring), talk and hang up, or give up and abandon; members pause with a
//! reason from [`PAUSE_REASONS`] and come back; presences change. Weights keep a handful of
//! calls in the air and a few members paused, at a pace a viewer can follow.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::callcenter::{CallCenter, CallPhase};

/// Pause reasons a supervisor sees on the board.
pub(crate) const PAUSE_REASONS: [&str; 5] =
    ["Lunch", "Break", "Training", "After call work", "Meeting"];

/// Presence values the agents set: state, message.
const PRESENCES: [(&str, &str); 7] = [
    ("available", ""),
    ("available", ""),
    ("away", "Back in 10 minutes"),
    ("dnd", "In a meeting"),
    ("xa", "Gone home"),
    ("chat", "Free to chat"),
    ("unavailable", ""),
];

/// Customers who call (number, name; an empty name is an unknown caller).
const CUSTOMERS: [(&str, &str); 12] = [
    ("5559876", "Customer 5559876"),
    ("5550142", "Harper Logistics"),
    ("5550187", "J. Alvarez"),
    ("5550199", ""),
    ("5550123", "Nordic Dental"),
    ("5550111", "M. Rossi"),
    ("5550166", ""),
    ("5550175", "Greenfield School"),
    ("5550138", "A. Kowalczyk"),
    ("5550154", "Blue Harbor Cafe"),
    ("5550190", ""),
    ("5550107", "T. Nakamura"),
];

/// One move of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Move {
    Pause {
        interface: String,
        reason: String,
    },
    Resume {
        interface: String,
    },
    Presence {
        provider: String,
        state: String,
        message: String,
    },
    NewCall {
        queue: String,
        number: String,
        name: String,
    },
    Ring {
        call: u64,
        interface: String,
    },
    NoAnswer {
        call: u64,
    },
    Answer {
        call: u64,
    },
    HangUp {
        call: u64,
    },
    Abandon {
        call: u64,
    },
}

/// Picks the next move. `idle(state_interface)` says whether a member's phone is free; the
/// presence providers are those of the agents' hints.
pub(crate) fn next(
    cc: &CallCenter,
    providers: &[String],
    idle: impl Fn(&str) -> bool,
    rng: &mut StdRng,
) -> Option<Move> {
    let mut moves: Vec<(Move, u32)> = Vec::new();
    let members: Vec<(&str, &str, &str, bool, bool)> = cc
        .queues
        .iter()
        .flat_map(|q| {
            q.members.iter().map(move |m| {
                (
                    q.name.as_str(),
                    m.interface.as_str(),
                    m.state_interface.as_str(),
                    m.paused,
                    m.in_call,
                )
            })
        })
        .collect();
    let busy = |iface: &str| {
        cc.calls.iter().any(|c| match &c.phase {
            CallPhase::Ringing { interface, .. } | CallPhase::Connected { interface, .. } => {
                interface.eq_ignore_ascii_case(iface)
            }
            CallPhase::Waiting => false,
        })
    };
    for call in &cc.calls {
        match &call.phase {
            CallPhase::Waiting => {
                let free: Vec<&str> = members
                    .iter()
                    .filter(|(q, iface, si, paused, in_call)| {
                        q.eq_ignore_ascii_case(&call.queue)
                            && !paused
                            && !in_call
                            && idle(si)
                            && !busy(iface)
                    })
                    .map(|m| m.1)
                    .collect();
                if let Some(iface) = free.choose(rng) {
                    moves.push((
                        Move::Ring {
                            call: call.id,
                            interface: (*iface).to_owned(),
                        },
                        60,
                    ));
                }
                moves.push((Move::Abandon { call: call.id }, 6));
            }
            CallPhase::Ringing { .. } => {
                moves.push((Move::Answer { call: call.id }, 50));
                moves.push((Move::NoAnswer { call: call.id }, 8));
                moves.push((Move::Abandon { call: call.id }, 3));
            }
            CallPhase::Connected { .. } => moves.push((Move::HangUp { call: call.id }, 12)),
        }
    }
    let limit = (members.len() / 3).clamp(2, 12);
    if cc.calls.len() < limit && !cc.queues.is_empty() {
        let queue = cc.queues.choose(rng).map(|q| q.name.clone());
        let (number, name) = CUSTOMERS.choose(rng).copied().unwrap_or(("5550100", ""));
        if let Some(queue) = queue {
            moves.push((
                Move::NewCall {
                    queue,
                    number: number.to_owned(),
                    name: name.to_owned(),
                },
                30,
            ));
        }
    }
    let paused = members.iter().filter(|m| m.3).count();
    if let Some(m) = members
        .iter()
        .filter(|m| m.3)
        .collect::<Vec<_>>()
        .choose(rng)
    {
        moves.push((
            Move::Resume {
                interface: m.1.to_owned(),
            },
            8,
        ));
    }
    if paused < members.len() / 5 + 1
        && let Some(m) = members
            .iter()
            .filter(|m| !m.3 && !m.4 && !busy(m.1))
            .collect::<Vec<_>>()
            .choose(rng)
        && let Some(reason) = PAUSE_REASONS.choose(rng)
    {
        moves.push((
            Move::Pause {
                interface: m.1.to_owned(),
                reason: (*reason).to_owned(),
            },
            6,
        ));
    }
    if let (Some(provider), Some((state, message))) = (providers.choose(rng), PRESENCES.choose(rng))
    {
        moves.push((
            Move::Presence {
                provider: provider.clone(),
                state: (*state).to_owned(),
                message: (*message).to_owned(),
            },
            5,
        ));
    }
    let total: u32 = moves.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.random_range(0..total);
    for (m, w) in moves {
        if pick < w {
            return Some(m);
        }
        pick -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::callcenter::Member;

    fn cc() -> CallCenter {
        let mut cc = CallCenter::default();
        for ext in ["1001", "1002", "1003"] {
            let m = Member {
                interface: format!("Local/{ext}@agents-ring"),
                state_interface: format!("Custom:{ext}"),
                name: ext.to_owned(),
                penalty: 0,
                paused: false,
                reason: String::new(),
                calls_taken: 0,
                last_call: 0,
                last_pause: 0,
                login_time: 0,
                in_call: false,
            };
            cc.add_member("sales", m, true).expect("added");
        }
        cc
    }

    #[test]
    fn a_seed_replays_the_same_moves_and_every_kind_occurs() {
        let providers = vec!["CustomPresence:1001".to_owned()];
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut cc = cc();
            let mut seen = Vec::new();
            for t in 0..2000 {
                let Some(m) = next(&cc, &providers, |_| true, &mut rng) else {
                    continue;
                };
                // Apply what the pure model can apply by itself.
                match &m {
                    Move::NewCall {
                        queue,
                        number,
                        name,
                    } => {
                        cc.join(queue, number, name, t, 0);
                    }
                    Move::Ring { call, interface } => {
                        cc.ring(*call, interface, "1001", t, 0).expect("ring");
                    }
                    Move::NoAnswer { call } => {
                        cc.no_answer(*call).expect("no answer");
                    }
                    Move::Answer { call } => cc.answer(*call, t, "b".into()).expect("answer"),
                    Move::HangUp { call } => {
                        cc.complete(*call, t).expect("complete");
                    }
                    Move::Abandon { call } => {
                        cc.abandon(*call, t).expect("abandon");
                    }
                    Move::Pause { interface, reason } => {
                        cc.pause(interface, None, true, reason, t).expect("pause");
                    }
                    Move::Resume { interface } => {
                        cc.pause(interface, None, false, "", t).expect("resume");
                    }
                    Move::Presence { .. } => {}
                }
                seen.push(m);
            }
            seen
        };
        let a = run(7);
        assert_eq!(a, run(7));
        let kinds: std::collections::BTreeSet<String> = a
            .iter()
            .map(|m| {
                format!("{m:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(kinds.len(), 9, "{kinds:?}");
    }
}
