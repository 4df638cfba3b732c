//! The in-memory key index: for every key, the revisions at which it changed, with the metadata
//! etcd reports (create revision, version, lease). Values stay on disk, sealed; the index says
//! which record holds the value a read wants. Rebuilt from the data file at startup.
//!
//! Entries above the committed revision belong to a batch that is still being written; readers
//! never look past the committed revision, so they never see them.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::types::{KeySpan, Revision};

/// A record's place in history: main revision and position within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rev {
    pub main: Revision,
    pub sub: u32,
}

/// One change to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub rev: Rev,
    pub tombstone: bool,
    pub create: Revision,
    pub version: i64,
    pub lease: i64,
}

/// The visible state of a key at some revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Live {
    pub rev: Rev,
    pub create: Revision,
    pub version: i64,
    pub lease: i64,
}

#[derive(Default, Debug)]
pub struct Index {
    keys: BTreeMap<Bytes, Vec<Entry>>,
}

fn visible_in(entries: &[Entry], at: Revision) -> Option<&Entry> {
    let n = entries.partition_point(|e| e.rev.main <= at);
    entries[..n].last()
}

impl Index {
    pub fn new() -> Self {
        Index::default()
    }

    /// Appends a change; `entry.rev` must be above every revision already recorded for `key`.
    pub fn push(&mut self, key: Bytes, entry: Entry) {
        self.keys.entry(key).or_default().push(entry);
    }

    /// The key's live version at revision `at`, if it exists there.
    pub fn get(&self, key: &[u8], at: Revision) -> Option<Live> {
        let entries = self.keys.get(key)?;
        let e = visible_in(entries, at)?;
        (!e.tombstone).then_some(Live { rev: e.rev, create: e.create, version: e.version, lease: e.lease })
    }

    /// The version of `key` that was live just before revision `before` (for `prev_kv`).
    pub fn get_before(&self, key: &[u8], before: Rev) -> Option<Live> {
        let entries = self.keys.get(key)?;
        let n = entries.partition_point(|e| e.rev < before);
        let e = entries[..n].last()?;
        (!e.tombstone).then_some(Live { rev: e.rev, create: e.create, version: e.version, lease: e.lease })
    }

    /// Calls `f` for every key in `span` live at `at`, in key order; stops when `f` returns false.
    pub fn visit(&self, span: &KeySpan, at: Revision, mut f: impl FnMut(&Bytes, Live) -> bool) {
        let mut each = |k: &Bytes, entries: &Vec<Entry>| -> bool {
            match visible_in(entries, at) {
                Some(e) if !e.tombstone => f(k, Live { rev: e.rev, create: e.create, version: e.version, lease: e.lease }),
                _ => true,
            }
        };
        match span {
            KeySpan::Single(k) => {
                if let Some((k, es)) = self.keys.get_key_value(k) {
                    each(k, es);
                }
            }
            KeySpan::Range { .. } if span.is_empty() => {}
            KeySpan::Range { start, end } => {
                let upper = end.as_ref().map_or(Bound::Unbounded, |e| Bound::Excluded(e.clone()));
                for (k, es) in self.keys.range((Bound::Included(start.clone()), upper)) {
                    if !each(k, es) {
                        break;
                    }
                }
            }
        }
    }

    /// Like [`Index::visit`], in descending key order.
    pub fn visit_rev(&self, span: &KeySpan, at: Revision, mut f: impl FnMut(&Bytes, Live) -> bool) {
        match span {
            KeySpan::Single(_) => self.visit(span, at, f),
            KeySpan::Range { .. } if span.is_empty() => {}
            KeySpan::Range { start, end } => {
                let upper = end.as_ref().map_or(Bound::Unbounded, |e| Bound::Excluded(e.clone()));
                for (k, es) in self.keys.range((Bound::Included(start.clone()), upper)).rev() {
                    if let Some(e) = visible_in(es, at)
                        && !e.tombstone
                        && !f(k, Live { rev: e.rev, create: e.create, version: e.version, lease: e.lease })
                    {
                        break;
                    }
                }
            }
        }
    }

    /// Removes every entry above `committed` (a batch that failed to commit).
    pub fn rollback(&mut self, keys: &[Bytes], committed: Revision) {
        for k in keys {
            if let Some(es) = self.keys.get_mut(k) {
                es.retain(|e| e.rev.main <= committed);
                if es.is_empty() {
                    self.keys.remove(k);
                }
            }
        }
    }

    /// Removes the entries of main revision `main` from `keys` (a request that was undone).
    pub fn remove_main(&mut self, keys: &[Bytes], main: Revision) {
        for k in keys {
            if let Some(es) = self.keys.get_mut(k) {
                es.retain(|e| e.rev.main != main);
                if es.is_empty() {
                    self.keys.remove(k);
                }
            }
        }
    }

    /// The revisions compaction at `at` may delete: for each key, every entry older than the one
    /// live at `at`, and that one too if it is a tombstone.
    pub fn compactable(&self, at: Revision) -> Vec<Rev> {
        let mut out = Vec::new();
        for es in self.keys.values() {
            let n = es.partition_point(|e| e.rev.main <= at);
            if n == 0 {
                continue;
            }
            let keep_from = if es[n - 1].tombstone { n } else { n - 1 };
            out.extend(es[..keep_from].iter().map(|e| e.rev));
        }
        out
    }

    /// Drops what [`Index::compactable`] named.
    pub fn compact(&mut self, at: Revision) {
        self.keys.retain(|_, es| {
            let n = es.partition_point(|e| e.rev.main <= at);
            if n > 0 {
                let keep_from = if es[n - 1].tombstone { n } else { n - 1 };
                es.drain(..keep_from);
            }
            !es.is_empty()
        });
    }

    /// Number of keys with any retained history.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn put(rev: i64, create: i64, version: i64) -> Entry {
        Entry { rev: Rev { main: rev, sub: 0 }, tombstone: false, create, version, lease: 0 }
    }

    fn del(rev: i64) -> Entry {
        Entry { rev: Rev { main: rev, sub: 0 }, tombstone: true, create: 0, version: 0, lease: 0 }
    }

    #[test]
    fn history_and_tombstones() {
        let mut ix = Index::new();
        let k = Bytes::from_static(b"a");
        ix.push(k.clone(), put(2, 2, 1));
        ix.push(k.clone(), put(4, 2, 2));
        ix.push(k.clone(), del(5));
        ix.push(k.clone(), put(7, 7, 1));
        assert_eq!(ix.get(b"a", 1), None);
        assert_eq!(ix.get(b"a", 3).unwrap().version, 1);
        assert_eq!(ix.get(b"a", 4).unwrap().version, 2);
        assert_eq!(ix.get(b"a", 6), None);
        assert_eq!(ix.get(b"a", 9).unwrap().create, 7);
        assert_eq!(ix.get_before(b"a", Rev { main: 4, sub: 0 }).unwrap().version, 1);
        assert_eq!(ix.get_before(b"a", Rev { main: 7, sub: 0 }), None);
    }

    #[test]
    fn compaction_keeps_the_live_version() {
        let mut ix = Index::new();
        ix.push(Bytes::from_static(b"a"), put(1, 1, 1));
        ix.push(Bytes::from_static(b"a"), put(2, 1, 2));
        ix.push(Bytes::from_static(b"b"), put(3, 3, 1));
        ix.push(Bytes::from_static(b"b"), del(4));
        let gone = ix.compactable(4);
        assert_eq!(gone.len(), 3);
        ix.compact(4);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.get(b"a", 4).unwrap().version, 2);
    }

    #[test]
    fn spans_and_ordering() {
        let mut ix = Index::new();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            ix.push(Bytes::copy_from_slice(k.as_bytes()), put(i as i64 + 1, i as i64 + 1, 1));
        }
        let span = KeySpan::new(Bytes::from_static(b"b"), Bytes::from_static(b"d"));
        let mut seen = vec![];
        ix.visit(&span, 10, |k, _| {
            seen.push(k.clone());
            true
        });
        assert_eq!(seen, vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")]);
        let mut rev = vec![];
        ix.visit_rev(&KeySpan::new(Bytes::from_static(b"a"), Bytes::from_static(b"\0")), 10, |k, _| {
            rev.push(k.clone());
            true
        });
        assert_eq!(rev.first().unwrap().as_ref(), b"d");
        let backwards = KeySpan::new(Bytes::from_static(b"d"), Bytes::from_static(b"a"));
        let mut none = 0;
        ix.visit(&backwards, 10, |_, _| {
            none += 1;
            true
        });
        assert_eq!(none, 0);
    }
}
