//! The etcd v3 gRPC face driven directly through the generated clients in `daas_etcd::pb`, for
//! what `etcdctl` cannot show: request size limits and their codes, the watch stream's
//! control messages (ids, progress requests, refusals), the lease keep-alive stream,
//! Maintenance.Status, and UNIMPLEMENTED for RPCs daas does not offer.
//!
//! Expected behaviour is etcd 3.4's.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Server;
use daas_etcd::pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

type Kv = pb::kv_client::KvClient<Channel>;

/// Awaits `fut`, failing the test if it takes longer than 10 s.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut).await.unwrap_or_else(|_| panic!("{what} did not finish within 10 s"))
}

/// A Put of `size` value bytes.
fn put_of(key: &str, size: usize) -> pb::PutRequest {
    pb::PutRequest { key: Bytes::from(key.to_string()), value: Bytes::from(vec![b'x'; size]), ..Default::default() }
}

/// Puts `key=value`; returns the revision it got.
async fn put(kv: &mut Kv, key: &str, value: &str) -> i64 {
    let r = within(
        "Put",
        kv.put(pb::PutRequest { key: Bytes::from(key.to_string()), value: Bytes::from(value.to_string()), ..Default::default() }),
    )
    .await
    .expect("Put succeeds")
    .into_inner();
    r.header.expect("Put has a header").revision
}

/// How many keys `key` matches (0 or 1) and the store's revision.
async fn count(kv: &mut Kv, key: &[u8]) -> (i64, i64) {
    let r = within("Range", kv.range(pb::RangeRequest { key: Bytes::copy_from_slice(key), count_only: true, ..Default::default() }))
        .await
        .expect("Range succeeds")
        .into_inner();
    (r.count, r.header.expect("Range has a header").revision)
}

fn revision_of(r: &pb::WatchResponse) -> i64 {
    r.header.as_ref().map_or(0, |h| h.revision)
}

/// A create request for one key, with an automatic id.
fn watch_key(key: &str) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest { key: Bytes::from(key.to_string()), ..Default::default() }
}

/// One Watch stream: requests go in through a channel, responses are read one at a time.
struct WatchStream {
    tx: mpsc::Sender<pb::WatchRequest>,
    rx: tonic::Streaming<pb::WatchResponse>,
}

impl WatchStream {
    async fn open(server: &Server) -> WatchStream {
        let mut client = pb::watch_client::WatchClient::new(server.channel().await);
        let (tx, rx) = mpsc::channel(16);
        let rx = within("opening Watch", client.watch(ReceiverStream::new(rx))).await.expect("Watch is accepted").into_inner();
        WatchStream { tx, rx }
    }

    async fn send(&self, r: pb::watch_request::RequestUnion) {
        self.tx.send(pb::WatchRequest { request_union: Some(r) }).await.expect("the request stream is open");
    }

    async fn create(&self, c: pb::WatchCreateRequest) {
        self.send(pb::watch_request::RequestUnion::CreateRequest(c)).await;
    }

    async fn cancel(&self, watch_id: i64) {
        self.send(pb::watch_request::RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id })).await;
    }

    async fn progress(&self) {
        self.send(pb::watch_request::RequestUnion::ProgressRequest(pb::WatchProgressRequest {})).await;
    }

    /// The next response; fails the test after 10 s or if the stream ends.
    async fn next(&mut self, what: &str) -> pb::WatchResponse {
        match within(what, self.rx.message()).await {
            Ok(Some(r)) => r,
            other => panic!("waiting for {what}: {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `d`.
    async fn assert_silent(&mut self, d: Duration, when: &str) {
        if let Ok(r) = tokio::time::timeout(d, self.rx.message()).await {
            panic!("{when}: expected silence, got {r:?}");
        }
    }
}

// ---- request sizes --------------------------------------------------------------------------

#[tokio::test]
async fn request_size_limits_answer_as_etcd_and_store_nothing() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let before = count(&mut kv, b"big").await.1;
    // 1.6 MB: over --max-request-bytes (1.5 MiB) but within the gRPC limit.
    let err = within("1.6 MB Put", kv.put(put_of("big", 1_600_000))).await.expect_err("a Put of 1.6 MB must fail");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(err.message(), "etcdserver: request is too large");
    // Over the gRPC limit (1.5 MiB + 512 KiB).
    let err = within("2 MiB Put", kv.put(put_of("big", 2 * 1024 * 1024 + 1024))).await.expect_err("a Put over 2 MiB must fail");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().starts_with("grpc: received message larger than max"), "{err:?}");
    assert_eq!(count(&mut kv, b"big").await, (0, before), "nothing was stored and the revision did not move");
    // Just under the limit is fine.
    within("1.5 MB Put", kv.put(put_of("big", 1_500_000))).await.expect("a 1.5 MB Put succeeds");
    assert_eq!(count(&mut kv, b"big").await.0, 1);
}

#[tokio::test]
async fn put_over_the_grpc_limit_is_resource_exhausted() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let err = within("2 MiB Put", kv.put(put_of("huge", 2 * 1024 * 1024 + 1024))).await.expect_err("a Put over 2 MiB must fail");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
}

// ---- watch stream -------------------------------------------------------------------------

#[tokio::test]
async fn watch_stream_create_event_progress_cancel() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;

    w.create(watch_key("w/a")).await;
    let created = w.next("created").await;
    let (_, current) = count(&mut kv, b"w/a").await;
    assert!(created.created && !created.canceled && created.events.is_empty(), "{created:?}");
    assert_eq!(created.watch_id, 0, "the first automatic watch id is 0: {created:?}");
    assert_eq!(revision_of(&created), current, "{created:?}");

    let rev = put(&mut kv, "w/a", "v1").await;
    let ev = w.next("event").await;
    assert_eq!(ev.watch_id, 0, "{ev:?}");
    assert_eq!(ev.events.len(), 1, "{ev:?}");
    let kv0 = ev.events[0].kv.as_ref().expect("an event carries its key-value");
    assert_eq!((&kv0.key[..], &kv0.value[..], kv0.mod_revision), (&b"w/a"[..], &b"v1"[..], rev), "{ev:?}");
    assert_eq!(ev.events[0].r#type, pb::mvccpb::event::EventType::Put as i32);
    assert_eq!(revision_of(&ev), rev, "{ev:?}");

    // A write the watch does not cover moves the store on; the progress response reports the
    // store's current revision, as etcd's does.
    let current = put(&mut kv, "elsewhere", "x").await;
    w.progress().await;
    let p = w.next("progress").await;
    assert_eq!(p.watch_id, -1, "a requested progress response belongs to no watch: {p:?}");
    assert!(!p.created && !p.canceled && p.events.is_empty(), "{p:?}");
    assert_eq!(revision_of(&p), current, "{p:?}");

    w.cancel(0).await;
    let c = w.next("canceled").await;
    assert!(c.canceled && !c.created && c.watch_id == 0 && c.events.is_empty(), "{c:?}");
    // Canceled means no more events.
    put(&mut kv, "w/a", "v2").await;
    w.assert_silent(Duration::from_millis(300), "after cancel").await;
}

#[tokio::test]
async fn progress_request_reports_the_current_revision_right_after_events() {
    // The same check as above without the unrelated write: after a watched write has been
    // delivered, a progress request must report that write's revision.
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    w.create(watch_key("p")).await;
    assert!(w.next("created").await.created);
    let rev = put(&mut kv, "p", "1").await;
    assert_eq!(w.next("event").await.events.len(), 1);
    w.progress().await;
    let p = w.next("progress").await;
    assert_eq!((p.watch_id, revision_of(&p)), (-1, rev), "{p:?}");
}

#[tokio::test]
async fn duplicate_explicit_watch_id_is_refused_and_the_first_watch_lives_on() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;

    w.create(pb::WatchCreateRequest { watch_id: 7, ..watch_key("d") }).await;
    let first = w.next("first create").await;
    assert!(first.created && !first.canceled && first.watch_id == 7, "{first:?}");

    w.create(pb::WatchCreateRequest { watch_id: 7, ..watch_key("other") }).await;
    let dup = w.next("duplicate create").await;
    assert!(dup.created && dup.canceled, "a duplicate id is refused as created+canceled: {dup:?}");
    assert_eq!(dup.cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream", "{dup:?}");

    // The refusal must not touch watch 7.
    let rev = put(&mut kv, "d", "1").await;
    let ev = w.next("event for the first watch").await;
    assert!(ev.watch_id == 7 && ev.events.len() == 1 && !ev.canceled, "{ev:?}");
    assert_eq!(ev.events[0].kv.as_ref().map(|kv| kv.mod_revision), Some(rev));
}

/// etcd answers a refused create with watch id -1 (its `Watch` returns -1 with the error). A
/// refusal carrying the id of a live watch reads, to a client, as "your watch 7 was
/// canceled": clientv3 closes watch 7's channel on it.
#[tokio::test]
async fn duplicate_watch_id_refusal_carries_id_minus_one() {
    let server = Server::start();
    let mut w = WatchStream::open(&server).await;
    w.create(pb::WatchCreateRequest { watch_id: 7, ..watch_key("d") }).await;
    assert!(w.next("first create").await.created);
    w.create(pb::WatchCreateRequest { watch_id: 7, ..watch_key("d") }).await;
    let dup = w.next("duplicate create").await;
    assert!(dup.created && dup.canceled, "{dup:?}");
    assert_eq!(dup.watch_id, -1, "{dup:?}");
}

#[tokio::test]
async fn watch_with_range_end_before_key_is_refused() {
    let server = Server::start();
    let mut kv = server.kv().await;
    let mut w = WatchStream::open(&server).await;
    w.create(pb::WatchCreateRequest { range_end: Bytes::from_static(b"a"), ..watch_key("b") }).await;
    let r = w.next("refused create").await;
    assert!(r.created && r.canceled, "{r:?}");
    assert_eq!(r.watch_id, -1, "{r:?}");
    assert_eq!(r.cancel_reason, "mvcc: watcher range is empty", "{r:?}");
    // Nothing was registered: writes in either key produce nothing, and the stream stays usable.
    put(&mut kv, "a", "1").await;
    put(&mut kv, "b", "1").await;
    w.assert_silent(Duration::from_millis(300), "after a refused create").await;
    w.create(watch_key("b")).await;
    let ok = w.next("a valid create after the refusal").await;
    assert!(ok.created && !ok.canceled && ok.watch_id == 0, "{ok:?}");
}

/// etcd never hands out an automatic watch id twice on one stream (`nextID` only grows), so a
/// late response for a canceled watch can never be mistaken for a newer one.
#[tokio::test]
async fn automatic_watch_ids_are_not_reused() {
    let server = Server::start();
    let mut w = WatchStream::open(&server).await;
    w.create(watch_key("x")).await;
    assert_eq!(w.next("first create").await.watch_id, 0);
    w.cancel(0).await;
    assert!(w.next("cancel").await.canceled);
    w.create(watch_key("y")).await;
    let second = w.next("second create").await;
    assert!(second.created, "{second:?}");
    assert_eq!(second.watch_id, 1, "{second:?}");
}

#[tokio::test]
async fn progress_notify_sends_empty_responses_at_the_configured_interval() {
    let server = Server::start_with(&["--watch-progress-interval", "1s"]);
    let mut kv = server.kv().await;
    let rev = put(&mut kv, "pn/other", "x").await;
    let mut w = WatchStream::open(&server).await;
    w.create(pb::WatchCreateRequest { progress_notify: true, ..watch_key("pn/a") }).await;
    let created = w.next("created").await;
    assert!(created.created, "{created:?}");
    let id = created.watch_id;

    // The first thing to arrive must be the notification: nothing else happens on this stream.
    let started = Instant::now();
    let p = w.next("a progress notification").await;
    assert!(p.events.is_empty() && !p.created && !p.canceled, "expected an empty progress notification: {p:?}");
    assert!(started.elapsed() <= Duration::from_secs(3), "the first notification took {:?}", started.elapsed());
    assert_eq!(p.watch_id, id, "{p:?}");
    assert_eq!(revision_of(&p), rev, "{p:?}");
}

#[tokio::test]
async fn no_progress_notifications_unless_asked() {
    let server = Server::start_with(&["--watch-progress-interval", "1s"]);
    let mut w = WatchStream::open(&server).await;
    w.create(watch_key("quiet")).await;
    assert!(w.next("created").await.created);
    w.assert_silent(Duration::from_millis(2500), "a watch without progress_notify").await;
}

// ---- leases -------------------------------------------------------------------------------

#[tokio::test]
async fn lease_keep_alive_stream_reports_ttls() {
    let server = Server::start();
    let mut leases = pb::lease_client::LeaseClient::new(server.channel().await);
    let granted =
        within("LeaseGrant", leases.lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 })).await.expect("LeaseGrant succeeds").into_inner();
    assert!(granted.id != 0 && granted.ttl == 60, "{granted:?}");

    let (tx, rx) = mpsc::channel(4);
    let mut responses = within("opening LeaseKeepAlive", leases.lease_keep_alive(ReceiverStream::new(rx)))
        .await
        .expect("LeaseKeepAlive is accepted")
        .into_inner();
    let mut next = async |id: i64| {
        tx.send(pb::LeaseKeepAliveRequest { id }).await.expect("the request stream is open");
        match within("a keep-alive response", responses.message()).await {
            Ok(Some(r)) => r,
            other => panic!("keep-alive for {id}: {other:?}"),
        }
    };

    let r = next(granted.id).await;
    assert_eq!((r.id, r.ttl), (granted.id, 60), "{r:?}");
    let unknown = granted.id.wrapping_add(12345);
    let r = next(unknown).await;
    assert_eq!((r.id, r.ttl), (unknown, 0), "an unknown lease answers TTL 0: {r:?}");
    // The stream survives the unknown id.
    let r = next(granted.id).await;
    assert_eq!((r.id, r.ttl), (granted.id, 60), "{r:?}");
}

// ---- maintenance and unsupported RPCs -----------------------------------------------------

#[tokio::test]
async fn maintenance_status_reports_version_and_revision() {
    let server = Server::start();
    let mut kv = server.kv().await;
    put(&mut kv, "m", "1").await;
    let rev = put(&mut kv, "m", "2").await;
    let mut m = pb::maintenance_client::MaintenanceClient::new(server.channel().await);
    let s = within("Status", m.status(pb::StatusRequest {})).await.expect("Status succeeds").into_inner();
    assert_eq!(s.version, "3.4.0", "{s:?}");
    let header = s.header.as_ref().expect("Status has a header");
    assert_eq!(header.revision, rev, "{s:?}");
    assert_eq!(s.leader, header.member_id, "a single member leads itself: {s:?}");
}

/// Calls `path` with an empty request (every RPC below takes one) and returns the status.
async fn call_empty(channel: Channel, path: &'static str) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    within("connection ready", grpc.ready()).await.expect("the channel is ready");
    let codec = tonic_prost::ProstCodec::<pb::StatusRequest, pb::StatusResponse>::default();
    let call = grpc.unary(tonic::Request::new(pb::StatusRequest {}), tonic::codegen::http::uri::PathAndQuery::from_static(path), codec);
    within(path, call).await.expect_err("daas does not offer this RPC")
}

#[tokio::test]
async fn rpcs_daas_does_not_offer_are_unimplemented() {
    let server = Server::start();
    // A method missing from a service daas serves, and a service it does not serve at all.
    for path in ["/etcdserverpb.Maintenance/Defragment", "/etcdserverpb.Auth/AuthStatus"] {
        let st = call_empty(server.channel().await, path).await;
        assert_eq!(st.code(), Code::Unimplemented, "{path}: {st:?}");
    }

    // What etcdctl users see: etcdctl's failure, exit 1, the gRPC code.
    for args in [&["defrag"][..], &["auth", "enable"], &["user", "list"]] {
        let out = server.etcdctl(args);
        assert!(
            !out.killed && out.code == Some(1) && out.stderr.contains("code = Unimplemented") && out.stdout.is_empty(),
            "expected etcdctl {args:?} to fail with Unimplemented:\n{out}"
        );
    }
    // And the server is unharmed.
    assert_eq!(server.etcdctl(&["put", "k", "v"]).ok(), "OK\n");
}

/// An adapter says what it supports (STYLE.md, 7): a refusal names what is missing rather
/// than leaving etcdctl to print `desc = ` with nothing after it.
#[tokio::test]
async fn unimplemented_rpcs_say_what_is_missing() {
    let server = Server::start();
    for (path, name) in [("/etcdserverpb.Maintenance/Defragment", "Defragment"), ("/etcdserverpb.Auth/AuthStatus", "Auth")] {
        let st = call_empty(server.channel().await, path).await;
        assert_eq!(st.code(), Code::Unimplemented, "{path}: {st:?}");
        assert!(st.message().contains(name), "{path}: the message does not name what is unsupported: {st:?}");
    }
}

/// A watch created "from now" starts right after the revision its created response reports,
/// even while writes pour in: clients resume from that revision, so a watch that started later
/// would silently skip events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_watch_starts_right_after_its_created_revision() {
    let server = Server::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (mut kv, stop) = (server.kv().await, stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                put(&mut kv, "hot", &i.to_string()).await;
            }
        }));
    }
    let mut w = WatchStream::open(&server).await;
    for n in 0..60 {
        w.create(watch_key("hot")).await;
        let created = w.next("created").await;
        assert!(created.created, "{created:?}");
        // Every revision writes "hot", so the first event must be the very next revision.
        let first = w.next("first event").await;
        let rev = first.events.first().and_then(|e| e.kv.as_ref()).map(|kv| kv.mod_revision);
        assert_eq!(rev, Some(revision_of(&created) + 1), "watch {n}: created at {} but first event {first:?}", revision_of(&created));
        w.cancel(created.watch_id).await;
        // Skip what is still in flight for the canceled watch, up to its cancel confirmation.
        loop {
            let r = w.next("cancel confirmation").await;
            if r.canceled && r.watch_id == created.watch_id {
                break;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in writers {
        t.await.expect("writer");
    }
}
