//! The write-ahead log: how a commit becomes durable with one sequential write and one
//! `fdatasync`, instead of redb's page writes.
//!
//! Each batch's physical changes to the redb tables are appended as one frame and synced before
//! the batch is acknowledged; redb then commits them without syncing. A checkpoint (a durable
//! redb commit) makes everything before it safe in redb, after which old segments are deleted.
//! At open, every frame still in the log is replayed, in order; replaying a frame that redb
//! already holds changes nothing, because frames carry absolute values.
//!
//! Segment files `wal-<seq>.log` are zero-filled in advance by a helper thread, so an append
//! rewrites allocated blocks and the sync has no file-size metadata to write. Frame layout (see
//! docs/design.md): `len u32 BE | crc32 u32 BE | payload`; `len == 0` marks the end.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use redb::{Key, Table, Value};

use crate::error::{Result, StoreError};

/// Default size of a log segment; a checkpoint follows each filled segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;
const FRAME_HEADER: usize = 8;

/// Which table a logged change applies to (the tag's high bits; the low bit says delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TableId {
    Revs = 0,
    Leases = 1,
    Deks = 2,
    Meta = 3,
}

/// The changes of the batch being built, in order.
pub(crate) type Log = Rc<RefCell<Vec<u8>>>;

fn push_bytes(log: &mut Vec<u8>, b: &[u8]) {
    log.extend_from_slice(&(b.len() as u32).to_be_bytes());
    log.extend_from_slice(b);
}

/// A redb table whose changes are also recorded in the batch's log.
pub(crate) struct Logged<'t, K: Key + 'static, V: Value + 'static> {
    pub table: Table<'t, K, V>,
    log: Log,
    id: TableId,
}

impl<'t, K: Key + 'static, V: Value + 'static> Logged<'t, K, V> {
    pub fn new(table: Table<'t, K, V>, log: Log, id: TableId) -> Self {
        Logged { table, log, id }
    }

    pub fn insert<'k, 'v>(
        &mut self,
        key: impl std::borrow::Borrow<K::SelfType<'k>>,
        value: impl std::borrow::Borrow<V::SelfType<'v>>,
    ) -> Result<()> {
        {
            let mut log = self.log.borrow_mut();
            log.push((self.id as u8) << 1);
            push_bytes(&mut log, K::as_bytes(key.borrow()).as_ref());
            push_bytes(&mut log, V::as_bytes(value.borrow()).as_ref());
        }
        self.table.insert(key, value)?;
        Ok(())
    }

    /// Removes `key`; returns the size of the value it had, if any.
    pub fn remove<'k>(&mut self, key: impl std::borrow::Borrow<K::SelfType<'k>>) -> Result<Option<usize>> {
        {
            let mut log = self.log.borrow_mut();
            log.push(((self.id as u8) << 1) | 1);
            push_bytes(&mut log, K::as_bytes(key.borrow()).as_ref());
        }
        Ok(self.table.remove(key)?.map(|v| V::as_bytes(&v.value()).as_ref().len()))
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> std::ops::Deref for Logged<'t, K, V> {
    type Target = Table<'t, K, V>;
    fn deref(&self) -> &Table<'t, K, V> {
        &self.table
    }
}

/// One change read back from a frame.
pub(crate) struct Change<'a> {
    pub table: TableId,
    pub delete: bool,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Splits a frame's payload into its changes.
pub(crate) fn changes(mut p: &[u8]) -> Result<Vec<Change<'_>>> {
    fn bad() -> StoreError {
        StoreError::Storage("a write-ahead log frame is malformed".into())
    }
    fn take<'a>(p: &mut &'a [u8]) -> Result<&'a [u8]> {
        let n = u32::from_be_bytes(p.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
        let v = p.get(4..4 + n).ok_or_else(bad)?;
        *p = &p[4 + n..];
        Ok(v)
    }
    let mut out = Vec::new();
    while let Some((&tag, rest)) = p.split_first() {
        p = rest;
        let table = match tag >> 1 {
            0 => TableId::Revs,
            1 => TableId::Leases,
            2 => TableId::Deks,
            3 => TableId::Meta,
            _ => return Err(bad()),
        };
        let delete = tag & 1 == 1;
        let key = take(&mut p)?;
        let value = if delete { &[][..] } else { take(&mut p)? };
        out.push(Change { table, delete, key, value });
    }
    Ok(out)
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:016x}.log"))
}

/// Segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(hex) = name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log"))
            && let Ok(seq) = u64::from_str_radix(hex, 16)
        {
            out.push((seq, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Creates a zero-filled segment of `bytes` and syncs it (and the directory entry).
fn preallocate(dir: &Path, seq: u64, bytes: u64) -> std::io::Result<File> {
    let path = segment_path(dir, seq);
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(f)
}

/// Reads every frame of every segment in `dir`, oldest first, and hands each payload to
/// `apply`. A frame that fails its checksum ends the log (a write torn by a crash; it was never
/// acknowledged); valid frames after such a frame mean the log was damaged, which is an error.
pub(crate) fn replay(dir: &Path, mut apply: impl FnMut(&[u8]) -> Result<()>) -> Result<usize> {
    let mut frames = 0;
    let mut ended_at: Option<String> = None;
    for (seq, path) in segments(dir)? {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let mut off = 0usize;
        while off + FRAME_HEADER <= bytes.len() {
            let len = u32::from_be_bytes(bytes[off..off + 4].try_into().map_err(|_| StoreError::Storage("frame header".into()))?) as usize;
            if len == 0 {
                break;
            }
            let crc = u32::from_be_bytes(bytes[off + 4..off + 8].try_into().map_err(|_| StoreError::Storage("frame header".into()))?);
            let body = bytes.get(off + FRAME_HEADER..off + FRAME_HEADER + len);
            match body {
                Some(body) if crc32fast::hash(body) == crc => {
                    if let Some(at) = &ended_at {
                        return Err(StoreError::Storage(format!(
                            "the write-ahead log is damaged: a frame at {at} is invalid but later frames are intact; refusing to lose acknowledged writes silently"
                        )));
                    }
                    apply(body)?;
                    frames += 1;
                    off += FRAME_HEADER + len;
                }
                _ => {
                    // A torn write leaves a partial frame followed by the zeros the segment was
                    // filled with. Anything else after it means the log was altered or damaged.
                    let after = off + FRAME_HEADER + len;
                    if after < bytes.len() && bytes[after..].iter().any(|&b| b != 0) {
                        return Err(StoreError::Storage(format!(
                            "the write-ahead log is damaged: the frame at segment {seq:x} offset {off} is invalid but data follows it; refusing to lose acknowledged writes silently"
                        )));
                    }
                    tracing::warn!(segment = seq, offset = off, "the write-ahead log ends in a torn frame; it was never acknowledged");
                    ended_at = Some(format!("segment {seq:x} offset {off}"));
                    break;
                }
            }
        }
    }
    Ok(frames)
}

/// The open log, owned by the writer thread.
pub(crate) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    seq: u64,
    offset: u64,
    /// The first segment not yet covered by a checkpoint.
    oldest: u64,
    next: Option<std::thread::JoinHandle<std::io::Result<File>>>,
}

impl Wal {
    /// Starts a new log in `dir` after everything older was replayed and checkpointed: removes
    /// old segments and opens a fresh one.
    pub fn start(dir: &Path, segment_bytes: u64) -> Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let old = segments(dir)?;
        let seq = old.last().map_or(1, |(s, _)| s + 1);
        for (_, p) in &old {
            std::fs::remove_file(p)?;
        }
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(p)?;
            }
        }
        let file = preallocate(dir, seq, segment_bytes)?;
        let mut wal = Wal { dir: dir.to_owned(), segment_bytes, file, seq, offset: 0, oldest: seq, next: None };
        wal.prepare_next();
        Ok(wal)
    }

    fn prepare_next(&mut self) {
        let (dir, seq, bytes) = (self.dir.clone(), self.seq + 1, self.segment_bytes);
        self.next = std::thread::Builder::new().name("daas-wal-prealloc".into()).spawn(move || preallocate(&dir, seq, bytes)).ok();
    }

    /// Appends one frame and syncs it. When it returns, the frame survives a crash.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let need = (FRAME_HEADER + payload.len()) as u64;
        if self.offset > 0 && self.offset + need > self.segment_bytes {
            self.rotate()?;
        }
        let mut frame = Vec::with_capacity(need as usize);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
        frame.extend_from_slice(payload);
        self.file.write_all_at(&frame, self.offset)?;
        if self.offset + need > self.segment_bytes {
            // A frame larger than a segment grew the file; sync its size too.
            self.file.sync_all()?;
        } else {
            self.file.sync_data()?;
        }
        self.offset += need;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let next = match self.next.take().map(|h| h.join()) {
            Some(Ok(Ok(f))) => f,
            Some(Ok(Err(e))) => return Err(e.into()),
            _ => preallocate(&self.dir, self.seq + 1, self.segment_bytes)?,
        };
        self.file = next;
        self.seq += 1;
        self.offset = 0;
        self.prepare_next();
        Ok(())
    }

    /// True when filled segments wait for a checkpoint.
    pub fn wants_checkpoint(&self) -> bool {
        self.oldest < self.seq
    }

    /// Called after a durable redb commit: the segments before the current one are no longer
    /// needed. (The current one is kept; replaying it again is harmless.)
    pub fn checkpointed(&mut self) -> Result<()> {
        for (seq, p) in segments(&self.dir)? {
            if seq < self.seq {
                std::fs::remove_file(p)?;
            }
        }
        self.oldest = self.seq;
        Ok(())
    }

    /// After a final checkpoint at shutdown: nothing in the log is needed any more.
    pub fn clear(mut self) -> Result<()> {
        if let Some(h) = self.next.take() {
            let _ = h.join();
        }
        for (_, p) in segments(&self.dir)? {
            std::fs::remove_file(p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_replay_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 4096).unwrap();
        for i in 0..100u32 {
            wal.append(&i.to_be_bytes().repeat(20)).unwrap();
        }
        assert!(wal.wants_checkpoint());
        let mut seen = vec![];
        replay(dir.path(), |p| {
            seen.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        wal.checkpointed().unwrap();
        let mut after = 0;
        replay(dir.path(), |_| {
            after += 1;
            Ok(())
        })
        .unwrap();
        assert!(after < 100, "checkpointed segments are gone");
    }

    #[test]
    fn a_torn_tail_ends_the_log_but_a_damaged_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1 << 16).unwrap();
        for i in 0..3u8 {
            wal.append(&[i; 100]).unwrap();
        }
        let path = segment_path(dir.path(), 1);
        // Tear the last frame.
        let mut b = std::fs::read(&path).unwrap();
        b[2 * 108 + 50] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(replay(dir.path(), |_| Ok(())).unwrap(), 2);
        // Damage the first frame instead: later frames are intact, so this is not a torn tail.
        b[2 * 108 + 50] ^= 1;
        b[50] ^= 1;
        std::fs::write(&path, &b).unwrap();
        let err = replay(dir.path(), |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn changes_round_trip() {
        let log: Log = Rc::new(RefCell::new(Vec::new()));
        {
            let mut l = log.borrow_mut();
            l.push(0);
            push_bytes(&mut l, b"k");
            push_bytes(&mut l, b"v");
            l.push((3 << 1) | 1);
            push_bytes(&mut l, b"m");
        }
        let c =
            changes(&log.borrow()).unwrap().into_iter().map(|c| (c.table, c.delete, c.key.to_vec(), c.value.to_vec())).collect::<Vec<_>>();
        assert_eq!(c, vec![(TableId::Revs, false, b"k".to_vec(), b"v".to_vec()), (TableId::Meta, true, b"m".to_vec(), vec![])]);
        assert!(changes(&[9]).is_err());
    }
}
