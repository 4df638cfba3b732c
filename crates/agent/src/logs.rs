//! Container logs: written in the CRI log format the kubelet reads
//! (`<RFC3339Nano> <stdout|stderr> <F|P> <content>`, one line each, `P` for a piece of a line
//! longer than 16 KiB), one file per container instance at
//! `<pod dir>/logs/<container>/<restartCount>.log`, and read back the way `kubectl logs`
//! asks (tail, since, timestamps, limit, follow).
//!
//! A container writes its raw stdout and stderr to files next to the log (never to a pipe the
//! agent holds, which would kill it on an agent restart); [`run_tailer`] turns them into CRI
//! lines, stamping each with the time it read the line, and persists how far it got so that
//! the next agent continues where it stopped. Timestamps are therefore when the agent saw a
//! line (within its polling interval), not when the process wrote it. Start at
//! [`run_tailer`] for writing and [`read_log`] for reading.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tracing::warn;

/// The longest line the CRI format writes in one piece.
const MAX_LINE: usize = 16 * 1024;
/// At most this much raw output is converted per read.
const PUMP_CHUNK: u64 = 1 << 20;
/// The tailer's quickest polling interval (right after output).
const MIN_IDLE: Duration = Duration::from_millis(50);
/// How often `follow` looks for more.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How much a log reader reads at a time.
const READ_CHUNK: u64 = 256 * 1024;

/// What `kubectl logs` asks for (the query of `GET .../pods/<name>/log`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming until the container instance ends (`-f`).
    pub follow: bool,
    /// The previous instance (`--previous`).
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp (`--timestamps`).
    pub timestamps: bool,
    /// Only the last N lines (`--tail`); negative means all.
    pub tail_lines: Option<i64>,
    /// Only lines from the last N seconds (`--since`).
    pub since_seconds: Option<i64>,
    /// Only lines at or after this time (`--since-time`).
    pub since_time: Option<Timestamp>,
    /// Stop after this many bytes (`--limit-bytes`).
    pub limit_bytes: Option<i64>,
}

/// The log as a stream of byte chunks, ending when the log (or, following, the instance)
/// ends.
pub type LogStream = BoxStream<'static, Result<Vec<u8>, io::Error>>;

/// The files of one container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLogFiles {
    /// What the process writes to.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// How much of `stdout` and `stderr` is already in `log`.
    pub offsets: PathBuf,
    /// The CRI log.
    pub log: PathBuf,
}

impl InstanceLogFiles {
    /// The files of instance `attempt` in a container's log directory.
    pub fn new(dir: &Path, attempt: u32) -> InstanceLogFiles {
        InstanceLogFiles {
            stdout: dir.join(format!("{attempt}.stdout")),
            stderr: dir.join(format!("{attempt}.stderr")),
            offsets: dir.join(format!("{attempt}.offsets")),
            log: dir.join(format!("{attempt}.log")),
        }
    }
}

/// Converts an instance's raw output into its CRI log until `done` turns true (the instance
/// ended), then drains what is left, removes the raw files and returns. If `done`'s sender
/// goes away first (the agent is shutting down) it returns at once and leaves everything for
/// the next agent. Polls: quickly while output flows, backing off to `idle_max` when quiet.
pub async fn run_tailer(files: InstanceLogFiles, mut done: watch::Receiver<bool>, idle_max: Duration) {
    let mut offsets = read_offsets(&files.offsets);
    let mut idle = MIN_IDLE;
    loop {
        let finishing = *done.borrow_and_update();
        let moved = match pump(&files, &mut offsets, finishing) {
            Ok(n) => n,
            Err(e) => {
                warn!(log = %files.log.display(), error = %e, "copying container output to its log failed");
                0
            }
        };
        if moved > 0 {
            if let Err(e) = write_offsets(&files.offsets, offsets) {
                warn!(file = %files.offsets.display(), error = %e, "saving log offsets failed");
            }
            idle = MIN_IDLE;
        } else {
            idle = (idle * 2).min(idle_max.max(MIN_IDLE));
        }
        if finishing {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            changed = done.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
    for p in [&files.stdout, &files.stderr, &files.offsets] {
        let _ = fs::remove_file(p);
    }
}

/// Copies new raw output of both streams into the log; at `finishing`, an unterminated last
/// line too. Returns how many raw bytes it consumed.
fn pump(files: &InstanceLogFiles, offsets: &mut [u64; 2], finishing: bool) -> io::Result<u64> {
    let mut log: Option<File> = None;
    let mut moved = 0;
    for (i, (raw, stream)) in [(&files.stdout, "stdout"), (&files.stderr, "stderr")].into_iter().enumerate() {
        loop {
            let data = match read_from(raw, offsets[i], PUMP_CHUNK) {
                Ok(d) => d,
                // Not created yet, or already removed by an earlier drain.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            if data.is_empty() {
                break;
            }
            let full_read = data.len() as u64 == PUMP_CHUNK;
            let (lines, consumed) = to_cri(&data, stream, &Timestamp::now().to_string(), finishing && !full_read);
            if consumed == 0 {
                break;
            }
            if log.is_none() {
                log = Some(OpenOptions::new().create(true).append(true).open(&files.log)?);
            }
            if let Some(f) = log.as_mut() {
                f.write_all(&lines)?;
            }
            offsets[i] += consumed as u64;
            moved += consumed as u64;
            if !full_read {
                break;
            }
        }
    }
    Ok(moved)
}

/// CRI lines for the complete lines in `data` (and, with `flush`, the unterminated rest);
/// returns them and how many bytes of `data` they cover.
pub fn to_cri(data: &[u8], stream: &str, ts: &str, flush: bool) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut consumed = 0;
    let mut rest = data;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        push_line(&mut out, ts, stream, &rest[..nl], true);
        consumed += nl + 1;
        rest = &rest[nl + 1..];
    }
    if flush && !rest.is_empty() {
        push_line(&mut out, ts, stream, rest, true);
        consumed += rest.len();
    } else if rest.len() >= MAX_LINE {
        // A long line still being written: its full pieces now, the rest later.
        let whole = rest.len() / MAX_LINE * MAX_LINE;
        push_line(&mut out, ts, stream, &rest[..whole], false);
        consumed += whole;
    }
    (out, consumed)
}

/// One logical line as CRI lines, split into `P` pieces of [`MAX_LINE`]; the last piece is
/// `F` only if `complete`.
fn push_line(out: &mut Vec<u8>, ts: &str, stream: &str, line: &[u8], complete: bool) {
    let mut pieces = line.chunks(MAX_LINE).peekable();
    if pieces.peek().is_none() {
        out.extend_from_slice(format!("{ts} {stream} F \n").as_bytes());
        return;
    }
    while let Some(piece) = pieces.next() {
        let tag = if pieces.peek().is_none() && complete { "F" } else { "P" };
        out.extend_from_slice(format!("{ts} {stream} {tag} ").as_bytes());
        out.extend_from_slice(piece);
        out.push(b'\n');
    }
}

/// One parsed CRI log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp: &'a [u8],
    pub stream: &'a [u8],
    /// `F`: this ends a line; `P`: a piece of a longer one.
    pub full: bool,
    pub content: &'a [u8],
}

/// Parses one CRI log line (without its newline).
pub fn parse_cri(line: &[u8]) -> Option<CriLine<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or(&[]);
    Some(CriLine { timestamp, stream, full: tag != b"P", content })
}

/// Reads a CRI log as `kubectl logs` shows it. With `follow`, keeps polling for more as long
/// as `live()` says the instance writing it is running; the stream ends once the instance
/// ended and everything is read, or when the file goes away (the pod was removed).
pub fn read_log(path: PathBuf, opts: &LogOptions, live: Box<dyn Fn() -> bool + Send + Sync>) -> LogStream {
    let since = opts.since_time.or_else(|| {
        let secs = u64::try_from(opts.since_seconds?).ok()?;
        Timestamp::now().checked_sub(Duration::from_secs(secs)).ok()
    });
    let reader = Reader {
        path,
        offset: 0,
        tail: opts.tail_lines.and_then(|n| u64::try_from(n).ok()),
        started: false,
        carry: Vec::new(),
        since,
        timestamps: opts.timestamps,
        remaining: opts.limit_bytes.and_then(|n| u64::try_from(n).ok()),
        follow: opts.follow,
        live,
        ended: false,
    };
    futures::stream::unfold(reader, |mut r| async move {
        let item = r.next_chunk().await;
        item.map(|i| (i, r))
    })
    .boxed()
}

struct Reader {
    path: PathBuf,
    offset: u64,
    tail: Option<u64>,
    started: bool,
    /// Bytes of a line split across two reads.
    carry: Vec<u8>,
    since: Option<Timestamp>,
    timestamps: bool,
    remaining: Option<u64>,
    follow: bool,
    live: Box<dyn Fn() -> bool + Send + Sync>,
    ended: bool,
}

impl Reader {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>, io::Error>> {
        if self.ended {
            return None;
        }
        if !self.started {
            self.started = true;
            if let Some(n) = self.tail {
                match tail_offset(&self.path, n) {
                    Ok(o) => self.offset = o,
                    Err(e) => return self.fail(e),
                }
            }
        }
        loop {
            // Sampled before reading: if the instance had already ended, what this read
            // finds is all there will be.
            let live = self.follow && (self.live)();
            let data = match read_from(&self.path, self.offset, READ_CHUNK) {
                Ok(d) => d,
                Err(e) => return self.fail(e),
            };
            if !data.is_empty() {
                self.offset += data.len() as u64;
                let out = self.format(&data);
                if !out.is_empty() {
                    return Some(Ok(out));
                }
                if self.ended {
                    return None;
                }
                continue;
            }
            if live {
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
            self.ended = true;
            return None;
        }
    }

    /// A missing file ends the stream quietly (nothing logged yet, or the pod is gone).
    fn fail(&mut self, e: io::Error) -> Option<Result<Vec<u8>, io::Error>> {
        self.ended = true;
        if e.kind() == io::ErrorKind::NotFound { None } else { Some(Err(e)) }
    }

    /// The complete lines in `carry` + `data`, filtered and formatted.
    fn format(&mut self, data: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(data);
        let Some(last) = self.carry.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
        let complete: Vec<u8> = self.carry.drain(..=last).collect();
        let mut out = Vec::new();
        for line in complete.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let Some(entry) = parse_cri(line) else { continue };
            if let Some(since) = &self.since {
                let at = std::str::from_utf8(entry.timestamp).ok().and_then(|s| s.parse::<Timestamp>().ok());
                if at.is_some_and(|t| t < *since) {
                    continue;
                }
            }
            if self.timestamps {
                out.extend_from_slice(entry.timestamp);
                out.push(b' ');
            }
            out.extend_from_slice(entry.content);
            if entry.full {
                out.push(b'\n');
            }
        }
        if let Some(remaining) = self.remaining {
            let len = out.len() as u64;
            if len >= remaining {
                out.truncate(usize::try_from(remaining).unwrap_or(usize::MAX));
                self.remaining = Some(0);
                self.ended = true;
            } else {
                self.remaining = Some(remaining - len);
            }
        }
        out
    }
}

/// Where the last `n` lines of the file start.
pub fn tail_offset(path: &Path, n: u64) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut seen = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let size = usize::try_from(pos - start).unwrap_or(buf.len());
        let chunk = &mut buf[..size];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            if b != b'\n' {
                continue;
            }
            let after = start + i as u64 + 1;
            // The newline that ends the file ends the last line; it starts none.
            if after == len {
                continue;
            }
            seen += 1;
            if seen == n {
                return Ok(after);
            }
        }
        pos = start;
    }
    Ok(0)
}

/// Up to `max` bytes of the file from `offset` (empty at the end).
fn read_from(path: &Path, offset: u64, max: u64) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len <= offset {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    f.take(max.min(len - offset)).read_to_end(&mut data)?;
    Ok(data)
}

fn read_offsets(path: &Path) -> [u64; 2] {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut it = text.split_whitespace().map(|s| s.parse::<u64>().unwrap_or(0));
    [it.next().unwrap_or(0), it.next().unwrap_or(0)]
}

fn write_offsets(path: &Path, offsets: [u64; 2]) -> io::Result<()> {
    let tmp = path.with_extension("offsets.tmp");
    fs::write(&tmp, format!("{} {}\n", offsets[0], offsets[1]))?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    fn collect(path: &Path, opts: LogOptions) -> String {
        let stream = read_log(path.to_path_buf(), &opts, Box::new(|| false));
        let chunks: Vec<_> = futures::executor::block_on(stream.collect::<Vec<_>>());
        String::from_utf8(chunks.into_iter().flat_map(|c| c.unwrap()).collect()).unwrap()
    }

    #[test]
    fn cri_lines_round_trip() {
        let (out, used) = to_cri(b"a\nbb\npartial", "stdout", "2024-01-01T00:00:00Z", false);
        assert_eq!(used, 5);
        assert_eq!(String::from_utf8(out).unwrap(), "2024-01-01T00:00:00Z stdout F a\n2024-01-01T00:00:00Z stdout F bb\n");
        let (out, used) = to_cri(b"partial", "stderr", "T", true);
        assert_eq!((String::from_utf8(out).unwrap().as_str(), used), ("T stderr F partial\n", 7));
        let long = vec![b'x'; MAX_LINE + 3];
        let (out, used) = to_cri(&long, "stdout", "T", false);
        assert_eq!(used, MAX_LINE);
        assert!(String::from_utf8(out).unwrap().starts_with("T stdout P xxx"));
        let e = parse_cri(b"T stdout F hello world").unwrap();
        assert_eq!((e.stream, e.full, e.content), (&b"stdout"[..], true, &b"hello world"[..]));
        assert_eq!(parse_cri(b"T stdout F").unwrap().content, b"");
    }

    #[test]
    fn reads_tail_since_timestamps_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let text = "2024-01-01T00:00:01Z stdout F one\n\
                    2024-01-01T00:00:02Z stderr F two\n\
                    2024-01-01T00:00:03Z stdout P thr\n\
                    2024-01-01T00:00:03Z stdout F ee\n";
        fs::write(&path, text).unwrap();
        assert_eq!(collect(&path, LogOptions::default()), "one\ntwo\nthree\n");
        assert_eq!(collect(&path, LogOptions { tail_lines: Some(2), ..Default::default() }), "three\n");
        assert_eq!(collect(&path, LogOptions { tail_lines: Some(0), ..Default::default() }), "");
        assert_eq!(collect(&path, LogOptions { tail_lines: Some(10), ..Default::default() }), "one\ntwo\nthree\n");
        let since = "2024-01-01T00:00:02Z".parse().unwrap();
        assert_eq!(collect(&path, LogOptions { since_time: Some(since), ..Default::default() }), "two\nthree\n");
        assert_eq!(
            collect(&path, LogOptions { timestamps: true, tail_lines: Some(3), ..Default::default() }),
            "2024-01-01T00:00:02Z two\n2024-01-01T00:00:03Z thr2024-01-01T00:00:03Z ee\n"
        );
        assert_eq!(collect(&path, LogOptions { limit_bytes: Some(5), ..Default::default() }), "one\nt");
        assert_eq!(collect(&dir.path().join("missing.log"), LogOptions::default()), "");
    }

    #[tokio::test]
    async fn tailer_converts_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let files = InstanceLogFiles::new(dir.path(), 0);
        fs::write(&files.stdout, "hello\nwor").unwrap();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(run_tailer(files.clone(), rx, Duration::from_millis(50)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log = fs::read_to_string(&files.log).unwrap();
        assert!(log.ends_with(" stdout F hello\n"), "{log}");
        assert_eq!(read_offsets(&files.offsets), [6, 0]);
        tx.send(true).unwrap();
        task.await.unwrap();
        let log = fs::read_to_string(&files.log).unwrap();
        assert!(log.ends_with(" stdout F wor\n"), "{log}");
        assert!(!files.stdout.exists() && !files.offsets.exists());
    }
}
