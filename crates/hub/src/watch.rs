//! A wake-up without a cursor: [`Watch`] is ready whenever something was published since it
//! last looked, so one task can wake many subscribers that live on its own thread.
//!
//! Each subscription parked on the hub is a waker the publisher calls from its own thread, and
//! waking a task that lives on another thread's runtime costs a system call (that runtime's
//! event loop is woken). With 500 WebSocket clients on two server threads, one publish made
//! 500 such calls. A server thread can instead park one [`Watch`] on the hub and wake its own
//! subscribers locally when it fires.

use std::sync::Arc;
use std::task::{Context, Poll};

use crate::hub::{ParkedAt, Shared, wake_all};

/// Ready when something was published after the last time it was ready (or after it was
/// made). Dropping it unregisters it.
pub struct Watch {
    shared: Arc<Shared>,
    /// The last sequence number it reported.
    seen: u64,
    parked: ParkedAt,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Watch {
    pub(crate) fn new(shared: Arc<Shared>, seen: u64) -> Self {
        Self {
            shared,
            seen,
            parked: None,
        }
    }

    /// The latest sequence number once it is past the one reported last; otherwise lists the
    /// waker for the next publish, under the same lock hold that saw nothing new, so no publish
    /// can slip between the look and the listing.
    pub fn poll_published(&mut self, cx: &mut Context<'_>) -> Poll<u64> {
        let mut state = self.shared.lock();
        let last = state.last_seq();
        if last > self.seen {
            self.seen = last;
            return Poll::Ready(last);
        }
        state.parked.register(&mut self.parked, cx.waker());
        Poll::Pending
    }

    /// Waits for [`Watch::poll_published`].
    pub async fn published(&mut self) -> u64 {
        std::future::poll_fn(|cx| self.poll_published(cx)).await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.parked.is_some() {
            let wakers = self.shared.lock().parked.unregister(self.parked);
            wake_all(wakers);
        }
    }
}
