//! The call-center state of the simulated PBX: queues (members, waiting callers, counters),
//! presence per provider (`CustomPresence:1001`) and queued calls. Pure: no IO, no clock (the
//! callers pass the time in epoch seconds), no randomness; the board owns it under its lock.
//!
//! It follows `app_queue` as configured in `fixtures/ami/real/README.md` (scenarios j, l, m):
//! members are `dynamic` (added over AMI), a paused member keeps `LastPause` after it resumes,
//! and a queue counts completed and abandoned calls and those within its service level.

use std::collections::BTreeMap;

/// Why a queue change was refused; the `Display` text is Asterisk's answer to the action.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// `QueueAdd` of a member that is already in the queue.
    #[error("Unable to add interface: Already there")]
    AlreadyThere,
    /// `QueueAdd` to a queue that does not exist.
    #[error("Unable to add interface to queue: No such queue")]
    NoSuchQueueAdd,
    /// `QueueRemove` of an interface that is not a member.
    #[error("Unable to remove interface: Not there")]
    NotThere,
    /// `QueueRemove` from a queue that does not exist.
    #[error("Unable to remove interface from queue: No such queue")]
    NoSuchQueueRemove,
    /// `QueuePause` of an interface that is no member (of the named queue, or of any).
    #[error("Interface not found")]
    InterfaceNotFound,
    /// A queued call that does not exist (or has ended), or a step it cannot take now.
    #[error("no such queued call in that state")]
    NoSuchCall,
}

/// One queue member, as `QueueMember` items and `QueueMember*` events report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// `Interface` / `Location`, e.g. `Local/1001@agents-ring`.
    pub(crate) interface: String,
    /// `StateInterface`, the device whose state is the member's `Status`, e.g. `Custom:1001`.
    pub(crate) state_interface: String,
    /// `MemberName` / `Name`.
    pub(crate) name: String,
    pub(crate) penalty: u32,
    pub(crate) paused: bool,
    /// `PausedReason`; empty when not paused or paused without a reason.
    pub(crate) reason: String,
    pub(crate) calls_taken: u64,
    /// Epoch seconds of the end of the last call (0 = never).
    pub(crate) last_call: u64,
    /// Epoch seconds of the last pause (0 = never); stays set after unpausing.
    pub(crate) last_pause: u64,
    pub(crate) login_time: u64,
    pub(crate) in_call: bool,
}

/// One caller waiting in a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Waiting {
    /// The queued call's id.
    pub(crate) call: u64,
    /// Epoch seconds of `QueueCallerJoin`.
    pub(crate) joined: u64,
}

/// One queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) strategy: String,
    pub(crate) members: Vec<Member>,
    /// Waiting callers, position 1 first.
    pub(crate) waiting: Vec<Waiting>,
    pub(crate) completed: u64,
    pub(crate) abandoned: u64,
    /// Completed calls answered within the service level.
    pub(crate) completed_in_sl: u64,
    /// Abandoned calls that hung up within the service level.
    pub(crate) abandoned_in_sl: u64,
    /// The service level in seconds (`servicelevel=`; 0 as in the captures' `queues.conf`).
    pub(crate) service_level: u64,
    /// Running averages in seconds, updated as `app_queue` does (3/4 old + 1/4 new).
    pub(crate) holdtime: u64,
    pub(crate) talktime: u64,
    /// What `Queue:<name>_avail` reports now (true = NOT_INUSE, a member can take a call).
    pub(crate) avail: Option<bool>,
}

impl Queue {
    fn new(name: &str) -> Queue {
        Queue {
            name: name.to_owned(),
            strategy: "ringall".to_owned(),
            members: Vec::new(),
            waiting: Vec::new(),
            completed: 0,
            abandoned: 0,
            completed_in_sl: 0,
            abandoned_in_sl: 0,
            service_level: 0,
            holdtime: 0,
            talktime: 0,
            avail: None,
        }
    }

    pub(crate) fn member(&self, interface: &str) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| m.interface.eq_ignore_ascii_case(interface))
    }

    fn member_mut(&mut self, interface: &str) -> Option<&mut Member> {
        self.members
            .iter_mut()
            .find(|m| m.interface.eq_ignore_ascii_case(interface))
    }

    /// `ServicelevelPerf`: the share of completed calls answered within the service level.
    pub(crate) fn sl_perf(&self) -> f64 {
        if self.completed == 0 {
            return 0.0;
        }
        100.0 * self.completed_in_sl as f64 / self.completed as f64
    }

    /// `ServicelevelPerf2`: the same over completed and abandoned calls.
    pub(crate) fn sl_perf2(&self) -> f64 {
        let all = self.completed + self.abandoned;
        if all == 0 {
            return 0.0;
        }
        100.0 * (self.completed_in_sl + self.abandoned_in_sl) as f64 / all as f64
    }

    /// Whether at least one member could take a call (not paused).
    fn can_answer(&self) -> bool {
        self.members.iter().any(|m| !m.paused)
    }
}

/// One presence provider's value (`CustomPresence:1001`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Presence {
    /// `not_set`, `unavailable`, `available`, `away`, `xa`, `chat` or `dnd`.
    pub(crate) state: String,
    pub(crate) subtype: String,
    pub(crate) message: String,
}

/// The presence states Asterisk knows, as written and reported.
pub const PRESENCE_STATES: [&str; 7] = [
    "not_set",
    "unavailable",
    "available",
    "away",
    "xa",
    "chat",
    "dnd",
];

/// Where a queued call is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallPhase {
    /// In the queue, no member rung.
    Waiting,
    /// A member's phone rings (`AgentCalled`), since the given epoch second.
    Ringing { interface: String, since: u64 },
    /// Connected to a member (`AgentConnect`), since the given epoch second.
    Connected { interface: String, since: u64 },
}

/// One channel of a queued call, as channel events and `CoreShowChannel` describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Channel {
    pub(crate) name: String,
    /// `ast_channel_state`: 4 Ring, 5 Ringing, 6 Up.
    pub(crate) state: u8,
    pub(crate) caller_num: String,
    pub(crate) caller_name: String,
    pub(crate) connected_num: String,
    pub(crate) connected_name: String,
    pub(crate) context: String,
    pub(crate) exten: String,
    pub(crate) priority: u32,
    pub(crate) uniqueid: String,
    pub(crate) linkedid: String,
    pub(crate) application: String,
    pub(crate) data: String,
    pub(crate) created: u64,
    pub(crate) bridge: String,
}

/// A customer call through a queue: the caller's channel and, once a member is rung, the
/// member's channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) id: u64,
    pub(crate) queue: String,
    pub(crate) joined: u64,
    /// Where the caller joined (from 1).
    pub(crate) original_position: u32,
    pub(crate) phase: CallPhase,
    pub(crate) caller: Channel,
    pub(crate) agent: Option<Channel>,
}

/// Everything call-center the PBX knows.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallCenter {
    /// Queues in the order they were created (what `QueueStatus` lists).
    pub(crate) queues: Vec<Queue>,
    /// Written presence providers, by name (the order `PresenceStateList` reports).
    pub(crate) presence: BTreeMap<String, Presence>,
    /// Live queued calls, oldest first.
    pub(crate) calls: Vec<Call>,
    /// Counter of channel ids (`-00000000`) and unique ids.
    pub(crate) next_channel: u64,
    pub(crate) next_call: u64,
}

impl CallCenter {
    pub(crate) fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn queue_mut(&mut self, name: &str) -> Option<&mut Queue> {
        self.queues
            .iter_mut()
            .find(|q| q.name.eq_ignore_ascii_case(name))
    }

    /// Creates a queue (no-op when it exists).
    pub(crate) fn ensure_queue(&mut self, name: &str) -> &mut Queue {
        let i = match self
            .queues
            .iter()
            .position(|q| q.name.eq_ignore_ascii_case(name))
        {
            Some(i) => i,
            None => {
                self.queues.push(Queue::new(name));
                self.queues.len() - 1
            }
        };
        &mut self.queues[i]
    }

    /// Adds a dynamic member.
    pub(crate) fn add_member(
        &mut self,
        queue: &str,
        member: Member,
        create: bool,
    ) -> Result<(), QueueError> {
        let q = if create {
            self.ensure_queue(queue)
        } else {
            self.queue_mut(queue).ok_or(QueueError::NoSuchQueueAdd)?
        };
        if q.member(&member.interface).is_some() {
            return Err(QueueError::AlreadyThere);
        }
        q.members.push(member);
        Ok(())
    }

    /// Removes a member and returns it.
    pub(crate) fn remove_member(
        &mut self,
        queue: &str,
        interface: &str,
    ) -> Result<Member, QueueError> {
        let q = self.queue_mut(queue).ok_or(QueueError::NoSuchQueueRemove)?;
        let i = q
            .members
            .iter()
            .position(|m| m.interface.eq_ignore_ascii_case(interface))
            .ok_or(QueueError::NotThere)?;
        Ok(q.members.remove(i))
    }

    /// Pauses or resumes `interface` in `queue` (or in every queue it is a member of), and
    /// returns the names of the queues it changed in (in queue order).
    pub(crate) fn pause(
        &mut self,
        interface: &str,
        queue: Option<&str>,
        paused: bool,
        reason: &str,
        now: u64,
    ) -> Result<Vec<String>, QueueError> {
        let mut hit = Vec::new();
        for q in &mut self.queues {
            if queue.is_some_and(|n| !q.name.eq_ignore_ascii_case(n)) {
                continue;
            }
            if let Some(m) = q.member_mut(interface) {
                m.paused = paused;
                m.reason = if paused {
                    reason.to_owned()
                } else {
                    String::new()
                };
                if paused {
                    m.last_pause = now;
                }
                hit.push(q.name.clone());
            }
        }
        if hit.is_empty() {
            return Err(QueueError::InterfaceNotFound);
        }
        Ok(hit)
    }

    /// Sets a member's penalty in `queue` (or every queue).
    pub(crate) fn set_penalty(
        &mut self,
        interface: &str,
        queue: Option<&str>,
        penalty: u32,
    ) -> Result<Vec<String>, QueueError> {
        let mut hit = Vec::new();
        for q in &mut self.queues {
            if queue.is_some_and(|n| !q.name.eq_ignore_ascii_case(n)) {
                continue;
            }
            if let Some(m) = q.member_mut(interface) {
                m.penalty = penalty;
                hit.push(q.name.clone());
            }
        }
        if hit.is_empty() {
            return Err(QueueError::InterfaceNotFound);
        }
        Ok(hit)
    }

    /// Re-evaluates `Queue:<name>_avail`; `Some(avail)` when it changed.
    pub(crate) fn update_avail(&mut self, queue: &str) -> Option<bool> {
        let q = self.queue_mut(queue)?;
        let now = q.can_answer();
        // A queue that never had an answering member has never published the device.
        if q.avail == Some(now) || (q.avail.is_none() && !now) {
            return None;
        }
        q.avail = Some(now);
        Some(now)
    }

    /// Writes a presence; returns whether the value changed (`PresenceStatus` is sent only
    /// then; `PresenceStateChange` always).
    pub(crate) fn set_presence(&mut self, provider: &str, value: Presence) -> bool {
        let old = self.presence.insert(provider.to_owned(), value.clone());
        old.as_ref() != Some(&value)
    }

    fn channel_id(&mut self) -> u64 {
        let id = self.next_channel;
        self.next_channel += 1;
        id
    }

    /// A caller from `number` (`name`) enters `queue`: the queued call and its position.
    pub(crate) fn join(
        &mut self,
        queue: &str,
        number: &str,
        name: &str,
        now: u64,
        epoch: u64,
    ) -> u64 {
        let chan = self.channel_id();
        let unique = self.channel_id();
        self.next_call += 1;
        let id = self.next_call;
        let q = self.ensure_queue(queue);
        q.waiting.push(Waiting {
            call: id,
            joined: now,
        });
        let position = q.waiting.len() as u32;
        let queue_name = q.name.clone();
        let uniqueid = format!("{epoch}.{unique}");
        let caller = Channel {
            name: format!("Local/{number}@customers-{chan:08x};1"),
            state: 6,
            caller_num: number.to_owned(),
            caller_name: name.to_owned(),
            connected_num: String::new(),
            connected_name: String::new(),
            context: "callers".to_owned(),
            exten: "2000".to_owned(),
            priority: 1,
            uniqueid: uniqueid.clone(),
            linkedid: uniqueid,
            application: "Queue".to_owned(),
            data: format!("{queue_name},,,,30"),
            created: now,
            bridge: String::new(),
        };
        self.calls.push(Call {
            id,
            queue: queue_name,
            joined: now,
            original_position: position,
            phase: CallPhase::Waiting,
            caller,
            agent: None,
        });
        id
    }

    pub(crate) fn call(&self, id: u64) -> Option<&Call> {
        self.calls.iter().find(|c| c.id == id)
    }

    /// The caller's position (from 1) and the number waiting in its queue.
    pub(crate) fn position(&self, id: u64) -> Option<(u32, u32)> {
        let call = self.call(id)?;
        let q = self.queue(&call.queue)?;
        let i = q.waiting.iter().position(|w| w.call == id)?;
        Some((i as u32 + 1, q.waiting.len() as u32))
    }

    /// Rings member `interface` (whose extension is `exten`) for a waiting call.
    pub(crate) fn ring(
        &mut self,
        id: u64,
        interface: &str,
        exten: &str,
        now: u64,
        epoch: u64,
    ) -> Result<(), QueueError> {
        let chan = self.channel_id();
        let unique = self.channel_id();
        let call = self
            .calls
            .iter_mut()
            .find(|c| c.id == id && c.phase == CallPhase::Waiting)
            .ok_or(QueueError::NoSuchCall)?;
        let q = self
            .queues
            .iter()
            .find(|q| q.name == call.queue)
            .ok_or(QueueError::NoSuchCall)?;
        if q.member(interface).is_none() {
            return Err(QueueError::InterfaceNotFound);
        }
        call.phase = CallPhase::Ringing {
            interface: interface.to_owned(),
            since: now,
        };
        call.agent = Some(Channel {
            name: format!("Local/{exten}@agents-ring-{chan:08x};1"),
            state: 5,
            caller_num: exten.to_owned(),
            caller_name: String::new(),
            connected_num: call.caller.caller_num.clone(),
            connected_name: call.caller.caller_name.clone(),
            context: "agents-ring".to_owned(),
            exten: call.caller.exten.clone(),
            priority: 1,
            uniqueid: format!("{epoch}.{unique}"),
            linkedid: call.caller.linkedid.clone(),
            application: "AppQueue".to_owned(),
            data: "(Outgoing Line)".to_owned(),
            created: now,
            bridge: String::new(),
        });
        Ok(())
    }

    /// The rung member did not answer: the call waits again.
    pub(crate) fn no_answer(&mut self, id: u64) -> Result<(String, u64, Channel), QueueError> {
        let call = self
            .calls
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or(QueueError::NoSuchCall)?;
        let CallPhase::Ringing { interface, since } = call.phase.clone() else {
            return Err(QueueError::NoSuchCall);
        };
        let agent = call.agent.take().ok_or(QueueError::NoSuchCall)?;
        call.phase = CallPhase::Waiting;
        Ok((interface, since, agent))
    }

    /// The rung member answers: the call leaves the queue and both channels are bridged.
    pub(crate) fn answer(&mut self, id: u64, now: u64, bridge: String) -> Result<(), QueueError> {
        let call = self
            .calls
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or(QueueError::NoSuchCall)?;
        let CallPhase::Ringing { interface, .. } = call.phase.clone() else {
            return Err(QueueError::NoSuchCall);
        };
        call.phase = CallPhase::Connected {
            interface: interface.clone(),
            since: now,
        };
        let caller_num = call.caller.caller_num.clone();
        let caller_name = call.caller.caller_name.clone();
        if let Some(agent) = call.agent.as_mut() {
            agent.state = 6;
            agent.bridge = bridge.clone();
            agent.connected_num = caller_num.clone();
            agent.connected_name = caller_name.clone();
        }
        call.caller.bridge = bridge;
        call.caller.connected_num = caller_num;
        call.caller.connected_name = caller_name;
        let hold = now.saturating_sub(call.joined);
        let queue = call.queue.clone();
        if let Some(q) = self.queue_mut(&queue) {
            q.waiting.retain(|w| w.call != id);
            q.holdtime = ((q.holdtime << 2) - q.holdtime + hold) >> 2;
            if let Some(m) = q.member_mut(&interface) {
                m.in_call = true;
            }
        }
        Ok(())
    }

    /// A connected call ends; returns it. The member's counters and the queue's move.
    pub(crate) fn complete(&mut self, id: u64, now: u64) -> Result<Call, QueueError> {
        let i = self
            .calls
            .iter()
            .position(|c| c.id == id && matches!(c.phase, CallPhase::Connected { .. }))
            .ok_or(QueueError::NoSuchCall)?;
        let call = self.calls.remove(i);
        if let CallPhase::Connected { interface, since } = &call.phase {
            let hold = since.saturating_sub(call.joined);
            let talk = now.saturating_sub(*since);
            if let Some(q) = self.queue_mut(&call.queue) {
                q.completed += 1;
                if q.service_level == 0 || hold <= q.service_level {
                    q.completed_in_sl += u64::from(q.service_level > 0);
                }
                q.talktime = ((q.talktime << 2) - q.talktime + talk) >> 2;
                if let Some(m) = q.member_mut(interface) {
                    m.in_call = false;
                    m.calls_taken += 1;
                    m.last_call = now;
                }
            }
        }
        Ok(call)
    }

    /// The caller hangs up while waiting (or while a member rings); returns the call and its
    /// position when it left.
    pub(crate) fn abandon(&mut self, id: u64, now: u64) -> Result<(Call, u32), QueueError> {
        let (position, _) = self.position(id).ok_or(QueueError::NoSuchCall)?;
        let i = self
            .calls
            .iter()
            .position(|c| c.id == id)
            .ok_or(QueueError::NoSuchCall)?;
        let call = self.calls.remove(i);
        if let Some(q) = self.queue_mut(&call.queue) {
            q.waiting.retain(|w| w.call != id);
            q.abandoned += 1;
            let hold = now.saturating_sub(call.joined);
            if q.service_level > 0 && hold <= q.service_level {
                q.abandoned_in_sl += 1;
            }
        }
        Ok((call, position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(ext: &str, name: &str) -> Member {
        Member {
            interface: format!("Local/{ext}@agents-ring"),
            state_interface: format!("Custom:{ext}"),
            name: name.to_owned(),
            penalty: 0,
            paused: false,
            reason: String::new(),
            calls_taken: 0,
            last_call: 0,
            last_pause: 0,
            login_time: 100,
            in_call: false,
        }
    }

    #[test]
    fn members_are_added_once_paused_and_removed() {
        let mut cc = CallCenter::default();
        cc.add_member("sales", member("1001", "Alice"), true)
            .expect("added");
        assert_eq!(
            cc.add_member("sales", member("1001", "Alice"), true),
            Err(QueueError::AlreadyThere)
        );
        assert_eq!(
            cc.add_member("nosuch", member("1001", "Alice"), false),
            Err(QueueError::NoSuchQueueAdd)
        );
        assert_eq!(cc.update_avail("sales"), Some(true));
        let hit = cc
            .pause("Local/1001@agents-ring", None, true, "Lunch", 200)
            .expect("paused");
        assert_eq!(hit, vec!["sales".to_owned()]);
        assert_eq!(cc.update_avail("sales"), Some(false));
        cc.pause("Local/1001@agents-ring", Some("sales"), false, "x", 300)
            .expect("resumed");
        let m = cc
            .queue("sales")
            .and_then(|q| q.members.first())
            .expect("m");
        assert_eq!(
            (m.paused, m.reason.as_str(), m.last_pause),
            (false, "", 200)
        );
        assert_eq!(
            cc.pause("Local/9@agents-ring", None, true, "", 1),
            Err(QueueError::InterfaceNotFound)
        );
        assert_eq!(
            cc.pause("Local/1001@agents-ring", Some("support"), true, "", 1),
            Err(QueueError::InterfaceNotFound)
        );
        cc.remove_member("sales", "Local/1001@agents-ring")
            .expect("removed");
        assert_eq!(
            cc.remove_member("sales", "Local/1001@agents-ring"),
            Err(QueueError::NotThere)
        );
    }

    #[test]
    fn a_call_waits_rings_connects_and_completes() {
        let mut cc = CallCenter::default();
        cc.add_member("sales", member("1001", "Alice"), true)
            .expect("added");
        let a = cc.join("sales", "5551", "Ann", 1000, 1000);
        let b = cc.join("sales", "5552", "Ben", 1001, 1000);
        assert_eq!(cc.position(b), Some((2, 2)));
        cc.ring(a, "Local/1001@agents-ring", "1001", 1004, 1000)
            .expect("rings");
        cc.answer(a, 1008, "br".into()).expect("answered");
        assert_eq!(cc.position(b), Some((1, 1)));
        let done = cc.complete(a, 1068).expect("completed");
        assert_eq!(done.caller.caller_num, "5551");
        let q = cc.queue("sales").expect("q");
        assert_eq!((q.completed, q.abandoned), (1, 0));
        assert_eq!(q.members[0].calls_taken, 1);
        assert_eq!(q.members[0].last_call, 1068);
        let (_, pos) = cc.abandon(b, 1070).expect("abandoned");
        assert_eq!(pos, 1);
        let q = cc.queue("sales").expect("q");
        assert_eq!((q.completed, q.abandoned, q.waiting.len()), (1, 1, 0));
        assert!(cc.calls.is_empty());
    }

    #[test]
    fn presence_reports_whether_it_changed() {
        let mut cc = CallCenter::default();
        let away = Presence {
            state: "away".into(),
            subtype: "Lunch".into(),
            message: String::new(),
        };
        assert!(cc.set_presence("CustomPresence:1001", away.clone()));
        assert!(!cc.set_presence("CustomPresence:1001", away));
    }
}
