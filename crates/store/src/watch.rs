//! Watchers: a stream of events for a key span, from a past revision (replayed from history)
//! or from now, that never skips or repeats a revision.
//!
//! Every commit is broadcast once; each watcher filters it. A watcher that falls behind the
//! broadcast buffer catches up from the history on disk, as etcd's unsynced watchers do. Start
//! with [`Watcher::next`].

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::engine::{Batch, Store};
use crate::error::{Result, StoreError};
use crate::index::Rev;
use crate::types::{Event, EventKind, Revision, WatchRequest};

/// Most events one replay step returns (a revision is never split).
const REPLAY_CHUNK: usize = 1000;

/// A live watch. Dropping it cancels it.
pub struct Watcher {
    store: Store,
    rx: broadcast::Receiver<Arc<Batch>>,
    req: WatchRequest,
    /// The lowest revision not yet delivered.
    next_rev: Revision,
    replaying: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("span", &self.req.span).field("next_rev", &self.next_rev).finish()
    }
}

impl Watcher {
    pub(crate) fn new(store: Store, req: WatchRequest) -> Result<Self> {
        // Subscribe first, then read the revision: a commit in between is both replayed and
        // received, and the revision check below drops the duplicate.
        let rx = store.shared.events.subscribe();
        let current = store.current_revision();
        let compacted = store.compact_revision();
        if req.start_revision > 0 && req.start_revision < compacted {
            return Err(StoreError::Compacted { compact_revision: compacted });
        }
        let next_rev = if req.start_revision > 0 { req.start_revision } else { current + 1 };
        Ok(Watcher { store, rx, replaying: next_rev <= current, req, next_rev })
    }

    /// The revision the next event will have at least.
    pub fn next_revision(&self) -> Revision {
        self.next_rev
    }

    /// Waits for the next events. Errors: [`StoreError::Compacted`] when history the watcher
    /// still needed was compacted away; [`StoreError::Closed`] when the store shut down.
    pub async fn next(&mut self) -> Result<Vec<Event>> {
        loop {
            let events = self.step().await?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// Every revision at or below this one has been returned by [`Watcher::step`] (or had no
    /// event for this watcher): the revision a progress notification may report.
    pub fn synced_revision(&self) -> Revision {
        (self.next_rev - 1).min(self.store.current_revision())
    }

    /// Advances by one commit (or one replay chunk) and returns the matching events, which may
    /// be none. Cancel-safe: dropping the future loses nothing.
    pub async fn step(&mut self) -> Result<Vec<Event>> {
        if self.replaying {
            let current = self.store.current_revision();
            if self.next_rev > current {
                self.replaying = false;
                return Ok(Vec::new());
            }
            let (events, last) = self.store.history(&self.req.span, self.next_rev, current, REPLAY_CHUNK)?;
            self.next_rev = last + 1;
            return Ok(self.finish(events));
        }
        match self.rx.recv().await {
            Ok(batch) => {
                if batch.last_rev < self.next_rev {
                    return Ok(Vec::new());
                }
                let from = self.next_rev;
                let events: Vec<Event> =
                    batch.events.iter().filter(|e| e.kv.mod_revision >= from && self.req.span.contains(&e.kv.key)).cloned().collect();
                self.next_rev = batch.last_rev + 1;
                Ok(self.finish(events))
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "watcher fell behind; catching up from history");
                self.replaying = true;
                Ok(Vec::new())
            }
            Err(broadcast::error::RecvError::Closed) => Err(StoreError::Closed),
        }
    }

    /// Applies the put/delete filters and fills `prev_kv` where asked.
    fn finish(&self, mut events: Vec<Event>) -> Vec<Event> {
        events.retain(|e| match e.kind {
            EventKind::Put => !self.req.no_put,
            EventKind::Delete => !self.req.no_delete,
        });
        if self.req.prev_kv {
            for e in &mut events {
                // The sub revision is not carried in the event; any record of this main
                // revision for this key is the event itself, so look strictly before it.
                e.prev_kv = self.store.prev_of(&e.kv.key, Rev { main: e.kv.mod_revision, sub: 0 });
            }
        }
        events
    }
}
