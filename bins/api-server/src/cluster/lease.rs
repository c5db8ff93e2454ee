//! The AMI lease as a pure state machine: what an instance does next, given what it read of the
//! lease document and its own monotonic clock. No IO and no wall clock, so every rule is
//! unit-tested with made-up instants; [`super::task`] runs it against the store.
//!
//! The guarantees, with `lease_time` L and `margin` M (L/5):
//!
//! * A holder acts on the PBX only while its last *successful* renewal was *sent* less than
//!   `L - M` ago ([`Lease::valid_until`]). A renewal that fails, times out or is refused does
//!   not move that instant, so a holder cut off from MongoDB stops by itself.
//! * A contender takes the lease only after it saw the same lease `version` for a whole `L` on
//!   its own clock (the holder's last renewal was sent before the contender first saw its
//!   version, so the holder stopped at least `M` earlier), or at once when the document says
//!   nobody holds it (released) or there is no document yet. No two clocks are compared.
//! * A holder that stopped because its lease lapsed (MongoDB unreachable for a while) takes it
//!   back at once when the document still shows its own term: it is off the PBX already, and
//!   the take is conditional on the version it read, so it cannot overtake anyone. A process
//!   restarted under the same name does not know its old term and waits like anyone.

use std::time::Duration;

use tokio::time::Instant;

/// What an instance read of the lease document (the parts the rules need).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Who holds it; `None` after a release.
    pub holder: Option<String>,
    /// The holder's term (raised by every takeover).
    pub term: u64,
    /// Raised by every write: a version that does not move means a holder that does not renew.
    pub version: u64,
}

/// What the caller must do after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing now.
    Wait,
    /// Try `take_lease` with the state just read.
    Take,
    /// The lease is ours under this term: connect to the PBX.
    Start {
        /// The new term.
        term: u64,
    },
    /// The lease is no longer ours (or may not be by now): stop acting on the PBX at once.
    Stop,
}

/// The contender's account of the version it is watching.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Watch {
    version: u64,
    since: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    Contender { watch: Option<Watch> },
    Holder { term: u64, renewed_sent: Instant },
}

/// One instance's side of the lease.
#[derive(Clone, Debug)]
pub struct Lease {
    instance: String,
    lease_time: Duration,
    margin: Duration,
    role: Role,
    /// The last term this process held and stopped acting under.
    lapsed: Option<u64>,
}

impl Lease {
    /// A contender named `instance`, for leases of `lease_time`.
    pub fn new(instance: impl Into<String>, lease_time: Duration) -> Self {
        Self {
            instance: instance.into(),
            lease_time,
            margin: lease_time / 5,
            role: Role::Contender { watch: None },
            lapsed: None,
        }
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// How often the holder renews (a third of the lease time).
    pub fn renew_every(&self) -> Duration {
        self.lease_time / 3
    }

    /// How often a contender reads the lease (a fifth of the lease time).
    pub fn watch_every(&self) -> Duration {
        self.lease_time / 5
    }

    /// The term held, when this instance holds the lease.
    pub fn term(&self) -> Option<u64> {
        match self.role {
            Role::Holder { term, .. } => Some(term),
            Role::Contender { .. } => None,
        }
    }

    /// Until when a holder may act on the PBX and append status changes; `None` for a
    /// contender.
    pub fn valid_until(&self) -> Option<Instant> {
        match self.role {
            Role::Holder { renewed_sent, .. } => {
                Some(renewed_sent + self.lease_time.saturating_sub(self.margin))
            }
            Role::Contender { .. } => None,
        }
    }

    /// A contender read the lease document (`None`: there is none yet) at `now`. A holder that
    /// reads it too (it does not need to) changes nothing.
    pub fn observed(&mut self, seen: Option<&Observed>, now: Instant) -> Action {
        let Role::Contender { watch } = &mut self.role else {
            return Action::Wait;
        };
        let Some(seen) = seen else {
            return Action::Take;
        };
        if seen.holder.is_none() {
            return Action::Take;
        }
        if seen.holder.as_deref() == Some(self.instance.as_str()) && self.lapsed == Some(seen.term)
        {
            return Action::Take;
        }
        match watch {
            Some(w) if w.version == seen.version => {
                if now.duration_since(w.since) >= self.lease_time {
                    Action::Take
                } else {
                    Action::Wait
                }
            }
            _ => {
                *watch = Some(Watch {
                    version: seen.version,
                    since: now,
                });
                Action::Wait
            }
        }
    }

    /// The answer to a `take_lease` sent at `sent`: `Some(state)` when it is ours now.
    pub fn took(&mut self, taken: Option<&Observed>, sent: Instant) -> Action {
        if !matches!(self.role, Role::Contender { .. }) {
            return Action::Wait;
        }
        match taken {
            Some(state) if state.holder.as_deref() == Some(&self.instance) => {
                self.role = Role::Holder {
                    term: state.term,
                    renewed_sent: sent,
                };
                Action::Start { term: state.term }
            }
            // Someone moved first: watch whatever is there now from scratch.
            _ => {
                self.role = Role::Contender { watch: None };
                Action::Wait
            }
        }
    }

    /// The answer to a renewal sent at `sent`: `Ok(true)` renewed, `Ok(false)` refused (the
    /// lease is not ours any more), `Err(())` failed or timed out (decided later by the
    /// deadline). Checked against the deadline at `now`.
    pub fn renewed(&mut self, outcome: Result<bool, ()>, sent: Instant, now: Instant) -> Action {
        let Role::Holder { renewed_sent, .. } = &mut self.role else {
            return Action::Wait;
        };
        match outcome {
            Ok(true) => {
                // Answers can come back out of order only with overlapping calls, which the
                // task never makes; still, the deadline never moves back.
                if sent > *renewed_sent {
                    *renewed_sent = sent;
                }
                self.tick(now)
            }
            Ok(false) => self.lose(),
            Err(()) => self.tick(now),
        }
    }

    /// Checks the deadline at `now`: a holder past it stops.
    pub fn tick(&mut self, now: Instant) -> Action {
        match self.valid_until() {
            Some(until) if now >= until => self.lose(),
            _ => Action::Wait,
        }
    }

    /// Gives the lease up (a graceful stop, after releasing it): a contender again.
    pub fn released(&mut self) -> Action {
        match self.role {
            Role::Holder { .. } => {
                self.lose();
                // Released, not lapsed: the document says nobody holds it.
                self.lapsed = None;
                Action::Stop
            }
            Role::Contender { .. } => Action::Wait,
        }
    }

    fn lose(&mut self) -> Action {
        self.lapsed = self.term();
        self.role = Role::Contender { watch: None };
        Action::Stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Duration = Duration::from_secs(10);

    fn held_by(holder: &str, term: u64, version: u64) -> Observed {
        Observed {
            holder: Some(holder.to_owned()),
            term,
            version,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_document_or_a_released_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let mut a = Lease::new("a", L);
        assert_eq!(a.observed(None, t0), Action::Take);
        let released = Observed {
            holder: None,
            term: 4,
            version: 9,
        };
        assert_eq!(a.observed(Some(&released), t0), Action::Take);
        assert_eq!(
            a.took(Some(&held_by("a", 5, 10)), t0),
            Action::Start { term: 5 }
        );
        assert_eq!(a.term(), Some(5));
        assert_eq!(a.valid_until(), Some(t0 + ms(8_000)));
    }

    #[test]
    fn a_contender_waits_a_whole_lease_time_of_the_same_version() {
        let t0 = Instant::now();
        let mut b = Lease::new("b", L);
        // The holder renews: every new version restarts the wait.
        let mut now = t0;
        for v in 1..=10 {
            assert_eq!(b.observed(Some(&held_by("a", 1, v)), now), Action::Wait);
            now += ms(3_300);
        }
        // Then it stops renewing: version 10 stays for a whole lease time from when b first
        // saw it (at now - 3.3 s).
        let first_seen = now - ms(3_300);
        let mut t = now;
        while t < first_seen + L {
            assert_eq!(
                b.observed(Some(&held_by("a", 1, 10)), t),
                Action::Wait,
                "{t:?}"
            );
            t += ms(500);
        }
        assert_eq!(
            b.observed(Some(&held_by("a", 1, 10)), first_seen + L),
            Action::Take
        );
        // Someone else was quicker: b starts watching the new state from scratch.
        assert_eq!(b.took(None, first_seen + L), Action::Wait);
        assert_eq!(
            b.observed(Some(&held_by("c", 2, 11)), first_seen + L + ms(1)),
            Action::Wait
        );
        assert_eq!(b.term(), None);
    }

    /// The holder of version v stops before any contender may take over, whatever the delays:
    /// its deadline is counted from when it *sent* the renewal that made v, which is before any
    /// contender can have seen v.
    #[test]
    fn the_holder_stops_before_a_contender_may_take_over() {
        for (renew_delay, read_delay) in [(0, 0), (50, 0), (0, 900), (1_900, 1_900), (3_000, 1)] {
            let t0 = Instant::now();
            let mut a = Lease::new("a", L);
            assert_eq!(a.observed(None, t0), Action::Take);
            assert_eq!(
                a.took(Some(&held_by("a", 1, 1)), t0),
                Action::Start { term: 1 }
            );
            // A renewal sent at t1 is answered late; it made version 2.
            let t1 = t0 + ms(3_000);
            let answered = t1 + ms(renew_delay);
            assert_eq!(a.renewed(Ok(true), t1, answered), Action::Wait);
            // Then MongoDB is cut off from a: its renewals fail.
            let mut stopped_at = None;
            let mut t = answered;
            while stopped_at.is_none() {
                t += ms(100);
                if a.renewed(Err(()), t, t) == Action::Stop {
                    stopped_at = Some(t);
                }
            }
            // b first saw version 2 no sooner than it was written (after t1).
            let mut b = Lease::new("b", L);
            let seen_at = t1 + ms(read_delay);
            assert_eq!(b.observed(Some(&held_by("a", 1, 2)), seen_at), Action::Wait);
            let mut take_at = seen_at;
            while b.observed(Some(&held_by("a", 1, 2)), take_at) != Action::Take {
                take_at += ms(100);
            }
            let stopped_at = stopped_at.expect("a stopped");
            assert!(
                stopped_at + L / 5 <= take_at + ms(100),
                "a stopped at {stopped_at:?}, b took at {take_at:?} ({renew_delay}, {read_delay})"
            );
            assert_eq!(a.term(), None);
            assert_eq!(a.valid_until(), None);
        }
    }

    #[test]
    fn a_refused_renewal_stops_at_once_and_a_late_success_keeps_the_deadline() {
        let t0 = Instant::now();
        let mut a = Lease::new("a", L);
        a.took(Some(&held_by("a", 3, 1)), t0);
        // An answer to an older renewal does not move the deadline back.
        assert_eq!(
            a.renewed(Ok(true), t0 + ms(3_000), t0 + ms(3_010)),
            Action::Wait
        );
        assert_eq!(
            a.renewed(Ok(true), t0 + ms(1_000), t0 + ms(3_020)),
            Action::Wait
        );
        assert_eq!(a.valid_until(), Some(t0 + ms(11_000)));
        assert_eq!(a.tick(t0 + ms(10_999)), Action::Wait);
        // Refused: another instance holds it now.
        assert_eq!(
            a.renewed(Ok(false), t0 + ms(6_000), t0 + ms(6_001)),
            Action::Stop
        );
        assert_eq!(a.term(), None);
        // Stopped once; further answers change nothing.
        assert_eq!(
            a.renewed(Ok(true), t0 + ms(6_000), t0 + ms(6_001)),
            Action::Wait
        );
        assert_eq!(a.tick(t0 + ms(20_000)), Action::Wait);
    }

    #[test]
    fn a_late_answer_past_the_deadline_still_stops() {
        let t0 = Instant::now();
        let mut a = Lease::new("a", L);
        a.took(Some(&held_by("a", 1, 1)), t0);
        // A renewal sent at once but answered only after the deadline of the take: it moves the
        // deadline to 3 s + 8 s, still ahead, so a goes on.
        assert_eq!(
            a.renewed(Ok(true), t0 + ms(3_000), t0 + ms(8_500)),
            Action::Wait
        );
        // A renewal sent at 6 s and answered at 11.5 s: counted from 6 s, still valid.
        assert_eq!(
            a.renewed(Ok(true), t0 + ms(6_000), t0 + ms(11_500)),
            Action::Wait
        );
        assert_eq!(a.valid_until(), Some(t0 + ms(14_000)));
        // A process frozen (SIGSTOP) from 7 s to 20 s wakes past its deadline and stops first
        // thing, whatever its renewal says.
        assert_eq!(
            a.renewed(Ok(true), t0 + ms(6_500), t0 + ms(20_000)),
            Action::Stop
        );
    }

    /// Cut off from MongoDB, the holder stops; once MongoDB answers again and the document still
    /// shows its term, it takes the lease back at once instead of waiting a lease time. Another
    /// term (someone took over meanwhile) is waited for as usual.
    #[test]
    fn a_lapsed_holder_takes_its_own_term_back_at_once() {
        let t0 = Instant::now();
        let mut a = Lease::new("a", L);
        a.took(Some(&held_by("a", 4, 10)), t0);
        assert_eq!(a.tick(t0 + ms(8_000)), Action::Stop);
        assert_eq!(
            a.observed(Some(&held_by("a", 4, 10)), t0 + ms(9_000)),
            Action::Take
        );
        assert_eq!(
            a.took(Some(&held_by("a", 5, 11)), t0 + ms(9_000)),
            Action::Start { term: 5 }
        );
        // Lapsed again, but meanwhile b took over (term 6): a waits like anyone.
        assert_eq!(a.tick(t0 + ms(17_000)), Action::Stop);
        assert_eq!(
            a.observed(Some(&held_by("b", 6, 12)), t0 + ms(17_001)),
            Action::Wait
        );
        // Had nobody taken it, the document would still show a's term 5: taken back.
        assert_eq!(
            a.observed(Some(&held_by("a", 5, 11)), t0 + ms(17_002)),
            Action::Take
        );
    }

    #[test]
    fn released_and_own_old_lease() {
        let t0 = Instant::now();
        let mut a = Lease::new("a", L);
        assert_eq!(a.released(), Action::Wait);
        a.took(Some(&held_by("a", 1, 1)), t0);
        assert_eq!(a.released(), Action::Stop);
        // The document still names a (a restart under the same id): a waits like anyone.
        assert_eq!(a.observed(Some(&held_by("a", 1, 7)), t0), Action::Wait);
        assert_eq!(
            a.observed(Some(&held_by("a", 1, 7)), t0 + ms(9_999)),
            Action::Wait
        );
        assert_eq!(a.observed(Some(&held_by("a", 1, 7)), t0 + L), Action::Take);
        // A take answered for another instance is not ours.
        assert_eq!(a.took(Some(&held_by("z", 2, 8)), t0 + L), Action::Wait);
        assert_eq!(a.term(), None);
        assert_eq!(a.instance(), "a");
        assert_eq!((a.renew_every(), a.watch_every()), (L / 3, ms(2_000)));
    }
}
