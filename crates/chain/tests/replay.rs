//! The chain client against a scripted full node: a gRPC server that replays the answers a
//! Sui node gives (sui.rpc.v2 messages on the wire, as tonic encodes them), including the
//! faults a real one has — unavailable, too slow, a stream cut midway, an event missing its
//! place in the ledger — and records what the client asked.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daas_chain::{ChainClient, ChainError, StakeEvent, StakeRecord, StakeStatus};
use sui_rpc::proto::sui::rpc::v2::ledger_service_server::{LedgerService, LedgerServiceServer};
use sui_rpc::proto::sui::rpc::v2::{
    Bcs, Event, GetObjectRequest, GetObjectResponse, GetServiceInfoRequest, GetServiceInfoResponse, ListEventsRequest, ListEventsResponse,
    Object, QueryEnd, QueryEndReason, Watermark, event_literal,
};
use sui_sdk_types::Address;

type Frames = Vec<Result<ListEventsResponse, tonic::Status>>;
type EventStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ListEventsResponse, tonic::Status>> + Send>>;

#[allow(clippy::large_enum_variant)]
enum Step {
    Info(Result<GetServiceInfoResponse, tonic::Status>),
    Object(Result<GetObjectResponse, tonic::Status>),
    Events(Frames),
    Slow(Duration, Box<Step>),
}

#[derive(Default)]
struct Node {
    script: Mutex<VecDeque<Step>>,
    asked: Mutex<Vec<String>>,
}

impl Node {
    async fn next(&self, what: String) -> Step {
        self.asked.lock().unwrap().push(what);
        let step = self.script.lock().unwrap().pop_front().expect("the client asked more than the script holds");
        match step {
            Step::Slow(d, inner) => {
                tokio::time::sleep(d).await;
                *inner
            }
            s => s,
        }
    }
}

struct Replay(Arc<Node>);

#[tonic::async_trait]
impl LedgerService for Replay {
    async fn get_service_info(
        &self,
        _: tonic::Request<GetServiceInfoRequest>,
    ) -> Result<tonic::Response<GetServiceInfoResponse>, tonic::Status> {
        match self.0.next("GetServiceInfo".into()).await {
            Step::Info(r) => r.map(tonic::Response::new),
            _ => Err(tonic::Status::internal("script out of order")),
        }
    }

    async fn get_object(&self, r: tonic::Request<GetObjectRequest>) -> Result<tonic::Response<GetObjectResponse>, tonic::Status> {
        let r = r.into_inner();
        let mask = r.read_mask.map(|m| m.paths.join(",")).unwrap_or_default();
        match self.0.next(format!("GetObject {} [{mask}]", r.object_id.unwrap_or_default())).await {
            Step::Object(r) => r.map(tonic::Response::new),
            _ => Err(tonic::Status::internal("script out of order")),
        }
    }

    async fn list_events(&self, r: tonic::Request<ListEventsRequest>) -> Result<tonic::Response<EventStream>, tonic::Status> {
        let r = r.into_inner();
        let filter: Vec<String> = r
            .filter
            .iter()
            .flat_map(|f| f.terms.iter().flat_map(|t| t.literals.iter()))
            .map(|l| match &l.predicate {
                Some(event_literal::Predicate::EventType(t)) => format!("type={}", t.event_type.clone().unwrap_or_default()),
                _ => "other".into(),
            })
            .collect();
        let o = r.options.unwrap_or_default();
        let after = o.after.map(|a| hex::encode(&a)).unwrap_or_else(|| "-".into());
        match self.0.next(format!("ListEvents {} after={after} limit={}", filter.join("|"), o.limit.unwrap_or(0))).await {
            Step::Events(frames) => Ok(tonic::Response::new(Box::pin(tokio_stream::iter(frames)) as EventStream)),
            _ => Err(tonic::Status::internal("script out of order")),
        }
    }
}

async fn serve(script: Vec<Step>) -> (ChainClient, Arc<Node>, Address) {
    let node = Arc::new(Node { script: Mutex::new(script.into()), asked: Mutex::new(Vec::new()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = LedgerServiceServer::new(Replay(node.clone()));
    tokio::spawn(
        tonic::transport::Server::builder().add_service(svc).serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let package = Address::new([0x5a; 32]);
    let client = ChainClient::new(&format!("http://{addr}"), package).unwrap().with_limits(Duration::from_millis(500), 3);
    (client, node, package)
}

fn frame(package: &Address, n: u8, end: Option<QueryEndReason>) -> ListEventsResponse {
    let stake = StakeEvent {
        stake_id: Address::new([n; 32]),
        staker: Address::new([9; 32]),
        amount: 1000 * u64::from(n),
        node_id: format!("w-{n}"),
        staked_at: 1,
    };
    let mut e = Event::default();
    e.package_id = Some(package.to_string());
    e.module = Some("staking".into());
    e.sender = Some(Address::new([9; 32]).to_string());
    e.event_type = Some(format!("{package}::staking::StakeEvent"));
    let mut b = Bcs::default();
    b.name = e.event_type.clone();
    b.value = Some(stake.to_bcs().into());
    e.contents = Some(b);
    e.checkpoint = Some(100 + u64::from(n));
    e.transaction_digest = Some(format!("Dig{n}"));
    e.event_index = Some(0);
    let mut w = Watermark::default();
    w.cursor = Some(vec![n].into());
    let mut f = ListEventsResponse::default();
    f.event = Some(e);
    f.watermark = Some(w);
    f.end = end.map(|r| {
        let mut q = QueryEnd::default();
        q.reason = Some(r as i32);
        q
    });
    f
}

fn tip(cursor: u8) -> ListEventsResponse {
    let mut w = Watermark::default();
    w.cursor = Some(vec![cursor].into());
    w.checkpoint = Some(500);
    let mut q = QueryEnd::default();
    q.reason = Some(QueryEndReason::LedgerTip as i32);
    let mut f = ListEventsResponse::default();
    f.watermark = Some(w);
    f.end = Some(q);
    f
}

#[tokio::test]
async fn answers_faults_and_retries_as_a_full_node_gives_them() {
    let package = Address::new([0x5a; 32]);
    let rec = StakeRecord {
        id: Address::new([1; 32]),
        staker: Address::new([2; 32]),
        amount: 5000,
        node_id: "w-1".into(),
        status: StakeStatus::Active,
        staked_at: 1,
        locked_until: 1,
    };
    let mut obj = Object::default();
    obj.object_id = Some(rec.id.to_string());
    obj.version = Some(7);
    // Nodes spell type addresses in full; ours compare by value.
    obj.object_type = Some(format!("0x{}::staking::StakeRecord", hex::encode([0x5a; 32])));
    let mut b = Bcs::default();
    b.value = Some(rec.to_bcs().into());
    obj.contents = Some(b);
    let mut info = GetServiceInfoResponse::default();
    info.chain_id = Some("4btiuiMPvEENsttpZC7CZ53DruC3MAgfznDbASZ7DR6S".into());
    info.chain = Some("mainnet".into());
    info.checkpoint_height = Some(180_000_000);
    info.server = Some("sui-node".into());

    let (client, node, _) = serve(vec![
        // One transient failure, then the answer: retried.
        Step::Info(Err(tonic::Status::unavailable("overloaded"))),
        Step::Info(Ok(info)),
        Step::Object(Ok(GetObjectResponse::new(obj))),
        // Too slow every time: Unavailable, never a guess.
        Step::Slow(Duration::from_secs(2), Box::new(Step::Object(Err(tonic::Status::internal("late"))))),
        Step::Slow(Duration::from_secs(2), Box::new(Step::Object(Err(tonic::Status::internal("late"))))),
        Step::Slow(Duration::from_secs(2), Box::new(Step::Object(Err(tonic::Status::internal("late"))))),
        Step::Object(Err(tonic::Status::not_found("object not found"))),
        Step::Object(Err(tonic::Status::permission_denied("no"))),
        // Pages: two events and the limit; then a stream cut after one event; then the rest.
        Step::Events(vec![Ok(frame(&package, 1, None)), Ok(frame(&package, 2, Some(QueryEndReason::ItemLimit)))]),
        Step::Events(vec![Ok(frame(&package, 3, None)), Err(tonic::Status::unavailable("connection reset"))]),
        Step::Events(vec![Ok(frame(&package, 3, None)), Ok(tip(9))]),
        // An event without its checkpoint cannot be placed in the ledger: refused.
        Step::Events(vec![
            Ok({
                let mut f = frame(&package, 4, None);
                f.event.as_mut().unwrap().checkpoint = None;
                f
            }),
            Ok(tip(9)),
        ]),
    ])
    .await;

    let i = client.service_info().await.unwrap();
    assert_eq!((i.chain.as_str(), i.checkpoint_height), ("mainnet", 180_000_000));
    assert_eq!(client.stake_record(&rec.id).await.unwrap(), rec);
    let started = std::time::Instant::now();
    assert!(matches!(client.stake_record(&rec.id).await, Err(ChainError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(4), "deadline per attempt, three attempts");
    assert_eq!(client.stake_record(&rec.id).await, Err(ChainError::NotFound(rec.id.to_string())));
    assert!(matches!(client.stake_record(&rec.id).await, Err(ChainError::Rpc(_))), "not retried, not taken as a yes");

    let p1 = client.list_events(None, 2).await.unwrap();
    assert!(p1.full);
    assert_eq!(p1.events.iter().map(|e| e.key()).collect::<Vec<_>>(), ["Dig1/0", "Dig2/0"]);
    assert_eq!(p1.cursor.as_deref(), Some(&[2u8][..]));
    assert!(matches!(client.list_events(p1.cursor.as_deref(), 2).await, Err(ChainError::Unavailable(_))), "a cut stream is no page");
    let p2 = client.list_events(p1.cursor.as_deref(), 2).await.unwrap();
    assert!(!p2.full);
    assert_eq!(p2.events.len(), 1);
    assert_eq!(p2.cursor.as_deref(), Some(&[9u8][..]), "the scan frontier past the last match");
    assert!(matches!(client.list_events(p2.cursor.as_deref(), 2).await, Err(ChainError::Decode(_))));

    let asked = node.asked.lock().unwrap().clone();
    assert_eq!(asked[0], "GetServiceInfo");
    assert!(asked[2].starts_with(&format!("GetObject {} [", rec.id)) && asked[2].contains("contents"), "{}", asked[2]);
    let lists: Vec<&String> = asked.iter().filter(|a| a.starts_with("ListEvents")).collect();
    assert_eq!(lists[0], &format!("ListEvents type={package} after=- limit=2"));
    assert_eq!(lists[1], &format!("ListEvents type={package} after=02 limit=2"));
    assert_eq!(lists[2], lists[1], "resumed from the same cursor after the cut");
    assert_eq!(lists[3], &format!("ListEvents type={package} after=09 limit=2"));
}
