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
//! docs/design.md): `len u32 | crc32(payload) u32 | crc32(segment, offset, len, crc) u32 |
//! payload`; an all-zero header marks the end of a segment's frames.

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
const FRAME_HEADER: usize = 12;

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

/// The checksum of a frame header: binds the frame's length and payload checksum to where it
/// was written, so a damaged length or a frame moved elsewhere is told apart from a torn write.
fn header_crc(seq: u64, offset: u64, len: u32, crc: u32) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_be_bytes());
    h.update(&offset.to_be_bytes());
    h.update(&len.to_be_bytes());
    h.update(&crc.to_be_bytes());
    h.finalize()
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn damaged(seq: u64, off: usize, what: &str) -> StoreError {
    StoreError::Storage(format!(
        "the write-ahead log is damaged at segment {seq:x} offset {off}: {what}; refusing to start rather than lose acknowledged writes (the log is kept as it is)"
    ))
}

/// Reads every frame of every segment in `dir`, oldest first, and hands each payload to
/// `apply`. Only the last frame written can be incomplete (a write torn by a crash, never
/// acknowledged): it must be followed by nothing but the segment's zero fill, and no later
/// segment may hold a frame. Anything else — a damaged header, a damaged frame with data after
/// it, data after an empty header — is an error, never a silent truncation.
pub(crate) fn replay(dir: &Path, mut apply: impl FnMut(&[u8]) -> Result<()>) -> Result<usize> {
    let mut frames = 0;
    let mut torn_at: Option<(u64, usize)> = None;
    for (seq, path) in segments(dir)? {
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let zero_from = |from: usize| bytes.get(from..).is_none_or(|rest| rest.iter().all(|&b| b == 0));
        let mut off = 0usize;
        while off + FRAME_HEADER <= bytes.len() {
            let hdr = &bytes[off..off + FRAME_HEADER];
            if hdr.iter().all(|&b| b == 0) {
                if !zero_from(off) {
                    return Err(damaged(seq, off, "an empty frame header is followed by data"));
                }
                break;
            }
            if let Some((s, o)) = torn_at {
                return Err(damaged(s, o, "an incomplete frame is followed by intact frames"));
            }
            let (len, crc) = (be32(&hdr[0..4]), be32(&hdr[4..8]));
            if header_crc(seq, off as u64, len, crc) != be32(&hdr[8..12]) {
                // A header torn mid-write is followed only by zeros.
                if zero_from(off + FRAME_HEADER) {
                    torn_at = Some((seq, off));
                    break;
                }
                return Err(damaged(seq, off, "a frame header fails its checksum"));
            }
            let end = off + FRAME_HEADER + len as usize;
            match bytes.get(off + FRAME_HEADER..end) {
                Some(body) if crc32fast::hash(body) == crc => {
                    apply(body)?;
                    frames += 1;
                    off = end;
                }
                Some(_) if !zero_from(end) => return Err(damaged(seq, off, "a frame fails its checksum and data follows it")),
                _ => {
                    torn_at = Some((seq, off));
                    break;
                }
            }
        }
    }
    if let Some((seq, off)) = torn_at {
        tracing::warn!(segment = seq, offset = off, "the write-ahead log ends in an incomplete frame; it was never acknowledged");
    }
    Ok(frames)
}

/// Where a frame was written, so that it can be taken back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Appended {
    offset: u64,
    len: u64,
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

    /// Appends one frame and syncs it. When it returns, the frame survives a crash. When it
    /// fails, the frame has been taken back (zeroed), or the process aborts: a frame that might
    /// be durable must never belong to a write its caller was told failed.
    pub fn append(&mut self, payload: &[u8]) -> Result<Appended> {
        let need = (FRAME_HEADER + payload.len()) as u64;
        if self.offset > 0 && self.offset + need > self.segment_bytes {
            self.rotate()?;
        }
        let len = u32::try_from(payload.len()).map_err(|_| StoreError::Storage("a batch is larger than 4 GiB".into()))?;
        let crc = crc32fast::hash(payload);
        let mut frame = Vec::with_capacity(need as usize);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&crc.to_be_bytes());
        frame.extend_from_slice(&header_crc(self.seq, self.offset, len, crc).to_be_bytes());
        frame.extend_from_slice(payload);
        let at = Appended { offset: self.offset, len: need };
        let written = self.file.write_all_at(&frame, at.offset).and_then(|()| {
            if at.offset + need > self.segment_bytes {
                // A frame larger than a segment grew the file; sync its size too.
                self.file.sync_all()
            } else {
                self.file.sync_data()
            }
        });
        if let Err(e) = written {
            self.retract(at);
            return Err(e.into());
        }
        self.offset += need;
        Ok(at)
    }

    /// Takes back a frame whose batch failed after it was written: zeroes it and syncs. If even
    /// that fails, the frame's fate is unknown, and the process stops rather than let a write
    /// reported as failed reappear at the next start.
    pub fn retract(&mut self, at: Appended) {
        let zeros = vec![0u8; at.len as usize];
        if let Err(e) = self.file.write_all_at(&zeros, at.offset).and_then(|()| self.file.sync_data()) {
            tracing::error!(error = %e, "cannot take back a write-ahead log frame of a failed batch; stopping");
            std::process::abort();
        }
        self.offset = at.offset;
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
#[allow(clippy::unwrap_used)]
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

    /// Three 100-byte frames in one segment; returns the segment's path.
    fn three_frames(dir: &Path) -> PathBuf {
        let mut wal = Wal::start(dir, 1 << 16).unwrap();
        for i in 0..3u8 {
            wal.append(&[i + 1; 100]).unwrap();
        }
        segment_path(dir, 1)
    }

    const FRAME: usize = FRAME_HEADER + 100;

    fn frames_read(dir: &Path) -> Result<usize> {
        replay(dir, |_| Ok(()))
    }

    #[test]
    fn a_torn_tail_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = three_frames(dir.path());
        let mut b = std::fs::read(&path).unwrap();
        // The last frame's write stopped halfway: its second half is still the zero fill.
        b[2 * FRAME + FRAME_HEADER + 50..3 * FRAME].fill(0);
        std::fs::write(&path, &b).unwrap();
        assert_eq!(frames_read(dir.path()).unwrap(), 2);
        // Even its header was only half written.
        b[2 * FRAME + 6..3 * FRAME].fill(0);
        std::fs::write(&path, &b).unwrap();
        assert_eq!(frames_read(dir.path()).unwrap(), 2);
    }

    #[test]
    fn damage_anywhere_but_the_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = three_frames(dir.path());
        let good = std::fs::read(&path).unwrap();
        let damage = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            std::fs::write(&path, &b).unwrap();
            let err = frames_read(dir.path()).expect_err("damage must not pass as a torn tail");
            assert!(err.to_string().contains("damaged"), "{err}");
        };
        // A flipped payload bit in the first frame.
        damage(&|b| b[FRAME_HEADER + 50] ^= 1);
        // The first frame's length made huge, pointing into the zero fill.
        damage(&|b| b[1] ^= 0x10);
        // The first frame's header zeroed, as a lost block would leave it.
        damage(&|b| b[..FRAME_HEADER].fill(0));
        // The second frame's header zeroed.
        damage(&|b| b[FRAME..FRAME + FRAME_HEADER].fill(0));
        // Undamaged, all three frames are read.
        std::fs::write(&path, &good).unwrap();
        assert_eq!(frames_read(dir.path()).unwrap(), 3);
    }

    #[test]
    fn a_retracted_frame_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::start(dir.path(), 1 << 16).unwrap();
        wal.append(&[1; 10]).unwrap();
        let at = wal.append(&[2; 10]).unwrap();
        wal.retract(at);
        wal.append(&[3; 10]).unwrap();
        let mut seen = vec![];
        replay(dir.path(), |p| {
            seen.push(p[0]);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![1, 3]);
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
