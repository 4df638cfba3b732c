//! The Watch service: one bidirectional stream carries many watches. A control task reads
//! create/cancel/progress requests; each watch has a pump task feeding events into the shared
//! response channel. Progress notifications report a revision every watch on the stream has
//! fully delivered, so a client may rely on having seen everything up to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use daas_store::{KeySpan, KvBackend, StoreError, WatchRequest, WatchStream as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use crate::kv::Face;
use crate::lease::async_stream;
use crate::{convert, pb};

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

struct Running {
    task: JoinHandle<()>,
    synced: Arc<AtomicI64>,
}

#[tonic::async_trait]
impl<B: KvBackend> pb::watch_server::Watch for Face<B> {
    type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let face = self.clone();
        let input = req.into_inner();
        Ok(Response::new(async_stream(move |tx| control(face, input, tx))))
    }
}

async fn control<B: KvBackend>(face: Face<B>, mut input: Streaming<pb::WatchRequest>, tx: Out) {
    use pb::watch_request::RequestUnion as U;
    let mut watches: HashMap<i64, Running> = HashMap::new();
    let mut next_id = 0i64;
    while let Some(Ok(msg)) = input.next().await {
        watches.retain(|_, r| !r.task.is_finished());
        match msg.request_union {
            Some(U::CreateRequest(c)) => {
                // As in etcd, the range is checked before an id is handed out.
                let span = KeySpan::new(c.key.clone(), c.range_end.clone());
                if span.is_empty() {
                    let _ = tx.send(Ok(refused(&face, -1, "mvcc: watcher range is empty"))).await;
                    continue;
                }
                // Watch id 0 asks the server to pick one, as etcd's AutoWatchID does. Automatic ids
                // only grow, so an id is never reused on a stream.
                let id = if c.watch_id != 0 {
                    c.watch_id
                } else {
                    while watches.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id += 1;
                    next_id - 1
                };
                if watches.contains_key(&id) {
                    // The refusal carries -1, not the id: a client must not read it as the
                    // cancellation of its live watch with that id.
                    let _ = tx.send(Ok(refused(&face, -1, "mvcc: duplicate watch ID provided on the WatchStream"))).await;
                    continue;
                }
                use pb::watch_create_request::FilterType;
                // One revision for both the created header and the watch's start, as etcd does:
                // clients resume a watch from the created header's revision, so a watch that
                // started later than the header says would skip events.
                let current = face.backend.current_revision();
                let start_revision = if c.start_revision > 0 { c.start_revision } else { current + 1 };
                let req = WatchRequest {
                    span,
                    start_revision,
                    prev_kv: c.prev_kv,
                    no_put: c.filters.contains(&(FilterType::Noput as i32)),
                    no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
                };
                let created = pb::WatchResponse { header: face.header(current), watch_id: id, created: true, ..Default::default() };
                match face.backend.watch(req).await {
                    Ok(w) => {
                        if tx.send(Ok(created)).await.is_err() {
                            break;
                        }
                        let synced = Arc::new(AtomicI64::new(w.synced_revision()));
                        let task = tokio::spawn(pump(face.clone(), id, w, c.progress_notify, synced.clone(), tx.clone()));
                        watches.insert(id, Running { task, synced });
                    }
                    Err(StoreError::Compacted { compact_revision }) => {
                        let _ = tx.send(Ok(created)).await;
                        let _ = tx.send(Ok(compacted(&face, id, compact_revision))).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(crate::status::to_status(e))).await;
                        break;
                    }
                }
            }
            Some(U::CancelRequest(c)) => {
                if let Some(r) = watches.remove(&c.watch_id) {
                    r.task.abort();
                    let resp = pb::WatchResponse {
                        header: face.header(face.backend.current_revision()),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
            }
            Some(U::ProgressRequest(_)) => {
                let current = face.backend.current_revision();
                let rev = watches.values().map(|r| r.synced.load(Ordering::Acquire)).min().unwrap_or(current).min(current);
                let resp = pb::WatchResponse { header: face.header(rev), watch_id: -1, ..Default::default() };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
            None => {}
        }
    }
    for (_, r) in watches {
        r.task.abort();
    }
}

/// A create that is refused: created and canceled at once, with the reason.
fn refused<B: KvBackend>(face: &Face<B>, id: i64, reason: &str) -> pb::WatchResponse {
    pb::WatchResponse {
        header: face.header(face.backend.current_revision()),
        watch_id: id,
        created: true,
        canceled: true,
        cancel_reason: reason.into(),
        ..Default::default()
    }
}

/// The watch needed history that compaction removed: canceled with the compact revision.
fn compacted<B: KvBackend>(face: &Face<B>, id: i64, compact_revision: i64) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(pb::ResponseHeader { cluster_id: face.cluster_id, member_id: face.member_id, revision: 0, raft_term: 1 }),
        watch_id: id,
        canceled: true,
        compact_revision,
        ..Default::default()
    }
}

async fn pump<B: KvBackend>(face: Face<B>, id: i64, mut w: B::Watch, progress_notify: bool, synced: Arc<AtomicI64>, tx: Out) {
    let mut ticker = tokio::time::interval(face.config.progress_interval);
    ticker.tick().await;
    let mut sent_since_tick = false;
    loop {
        tokio::select! {
            step = w.next_events() => match step {
                Ok(events) => {
                    let rev = w.synced_revision();
                    if !events.is_empty() {
                        let resp = pb::WatchResponse {
                            header: face.header(rev),
                            watch_id: id,
                            events: events.into_iter().map(convert::event).collect(),
                            ..Default::default()
                        };
                        if tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                        sent_since_tick = true;
                    }
                    synced.store(rev, Ordering::Release);
                }
                Err(StoreError::Compacted { compact_revision }) => {
                    let _ = tx.send(Ok(compacted(&face, id, compact_revision))).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(watch = id, error = %e, "watch ended");
                    let _ = tx.send(Ok(pb::WatchResponse { header: face.header(w.synced_revision()), watch_id: id, canceled: true, cancel_reason: e.to_string(), ..Default::default() })).await;
                    return;
                }
            },
            _ = ticker.tick(), if progress_notify => {
                if !sent_since_tick {
                    let resp = pb::WatchResponse { header: face.header(w.synced_revision()), watch_id: id, ..Default::default() };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
                sent_since_tick = false;
            }
        }
    }
}
