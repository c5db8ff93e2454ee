//! The call-cycle script: how a simulated phone moves on its own. Pure; all randomness comes
//! from the generator the caller passes, so a seed replays the same changes.
//!
//! This is the cycle idle → ringing → talking → (hold → talking)* → idle (wrap-up), with
//! missed calls, a second call ringing while talking, do-not-disturb (busy) and phones that log
//! off (unavailable) and come back. Further scripts (queues, pauses, presence) belong next to
//! it, each a pure module the board drives.

use rand::Rng;
use rand::rngs::StdRng;

use crate::states::DeviceState;

/// Where a phone may go next from `from`, with relative weights.
pub(crate) fn transitions(from: DeviceState) -> &'static [(DeviceState, u32)] {
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
pub(crate) fn eagerness(state: DeviceState) -> u32 {
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

/// A random starting state of the cycle.
pub(crate) fn start(rng: &mut StdRng) -> DeviceState {
    pick(rng, &START)
}

/// A random next state from `from`.
pub(crate) fn next(rng: &mut StdRng, from: DeviceState) -> DeviceState {
    pick(rng, transitions(from))
}

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
