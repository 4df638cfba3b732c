//! The chain client against the development ledger over real gRPC on loopback: the code path
//! a Sui full node would see.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use daas_chain::{ChainClient, ChainError, DevLedger, StakeStatus};
use sui_sdk_types::Address;

async fn serve(ledger: &DevLedger) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, serving) = ledger
        .serve(listener, async {
            let _ = rx.await;
        })
        .unwrap();
    tokio::spawn(serving);
    (format!("http://{addr}"), tx)
}

#[tokio::test]
async fn stakes_are_read_through_sui_rpc_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let ledger = DevLedger::open(&path).unwrap();
    let staker = Address::new([9; 32]);
    let rec = ledger.stake(staker, "worker-1", 5_000, 1_790_000_000_000).unwrap();
    let (url, stop) = serve(&ledger).await;
    let client = ChainClient::new(&url, ledger.package()).unwrap();

    let info = client.service_info().await.unwrap();
    assert_eq!(info.chain, "development-ledger");
    assert_eq!(info.chain_id, ledger.chain_id());
    assert_eq!(info.checkpoint_height, 1);

    let got = client.stake_record(&rec.id).await.unwrap();
    assert_eq!(got, rec);
    assert_eq!((got.staker, got.amount, got.node_id.as_str(), got.status), (staker, 5_000, "worker-1", StakeStatus::Active));

    ledger.slash(&rec.id, "test").unwrap();
    assert_eq!(client.stake_record(&rec.id).await.unwrap().status, StakeStatus::Slashed);

    // Unknown objects, and objects of another type, are refused with what they are.
    let unknown = Address::new([7; 32]);
    assert_eq!(client.stake_record(&unknown).await, Err(ChainError::NotFound(unknown.to_string())));
    let coin = Address::new([8; 32]);
    ledger.put_object(&coin, "0x2::coin::Coin<0x2::sui::SUI>", vec![0; 40]).unwrap();
    assert!(matches!(client.stake_record(&coin).await, Err(ChainError::WrongType { .. })));
    // A client for another package does not take our records as its own.
    let other = ChainClient::new(&url, Address::new([1; 32])).unwrap();
    assert!(matches!(other.stake_record(&rec.id).await, Err(ChainError::WrongType { .. })));
    let _ = stop.send(());

    // The ledger is a file: reopened, it holds the same records and identity.
    let again = DevLedger::open(&path).unwrap();
    assert_eq!((again.chain_id(), again.package()), (ledger.chain_id(), ledger.package()));
    let (url, _stop) = serve(&again).await;
    let client = ChainClient::new(&url, again.package()).unwrap();
    assert_eq!(client.stake_record(&rec.id).await.unwrap().status, StakeStatus::Slashed);
}

#[tokio::test]
async fn an_unreachable_chain_is_an_error_not_an_answer() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client =
        ChainClient::new(&format!("http://127.0.0.1:{port}"), Address::new([1; 32])).unwrap().with_limits(Duration::from_millis(500), 2);
    let started = std::time::Instant::now();
    assert!(matches!(client.stake_record(&Address::new([2; 32])).await, Err(ChainError::Unavailable(_))));
    assert!(matches!(client.service_info().await, Err(ChainError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn events_are_listed_in_order_and_resume_from_a_cursor() {
    use daas_chain::{K8sApiRequest, PackageEvent};
    let dir = tempfile::tempdir().unwrap();
    let ledger = DevLedger::open(&dir.path().join("ledger.json")).unwrap();
    let staker = Address::new([9; 32]);
    let a = ledger.stake(staker, "worker-1", 5_000, 1).unwrap();
    let b = ledger.stake(staker, "worker-2", 7_000, 2).unwrap();
    ledger.unstake(&a.id, 3).unwrap();
    ledger.slash(&b.id, "double signing").unwrap();
    let req = K8sApiRequest {
        method: "POST".into(),
        path: "/api/v1/namespaces/default/configmaps".into(),
        namespace: "default".into(),
        resource_type: "configmaps".into(),
        payload: br#"{"metadata":{"name":"x"}}"#.to_vec(),
        sender: staker,
        timestamp: 4,
    };
    let (digest, index) = ledger.submit_request(&req).unwrap();
    // Another package's object writes emit nothing; a slashed stake cannot be slashed again.
    assert!(ledger.slash(&b.id, "again").is_err());
    assert!(ledger.unstake(&a.id, 5).is_err());

    let (url, _stop) = serve(&ledger).await;
    let client = ChainClient::new(&url, ledger.package()).unwrap();
    let all = client.list_events(None, 100).await.unwrap();
    assert!(!all.full);
    let kinds: Vec<_> = all.events.iter().map(|e| e.decode(&ledger.package()).unwrap().unwrap()).collect();
    assert!(matches!(&kinds[0], PackageEvent::Stake(s) if s.stake_id == a.id && s.amount == 5_000 && s.node_id == "worker-1"));
    assert!(matches!(&kinds[1], PackageEvent::Stake(s) if s.stake_id == b.id));
    assert!(matches!(&kinds[2], PackageEvent::Unstake(u) if u.stake_id == a.id && u.staker == staker));
    assert!(matches!(&kinds[3], PackageEvent::Slash(s) if s.stake_id == b.id && s.reason == "double signing"));
    assert_eq!(kinds[4], PackageEvent::Request(req));
    assert_eq!((all.events[4].tx_digest.as_str(), all.events[4].event_index), (digest.as_str(), index));
    assert_eq!(all.events[4].sender, staker);
    let checkpoints: Vec<u64> = all.events.iter().map(|e| e.checkpoint).collect();
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]), "{checkpoints:?}");

    // Pages of two, each resumed from the last cursor, give the same five events once each.
    let mut cursor: Option<Vec<u8>> = None;
    let mut paged = Vec::new();
    loop {
        let page = client.list_events(cursor.as_deref(), 2).await.unwrap();
        paged.extend(page.events.iter().map(|e| e.key()));
        cursor = page.cursor.clone();
        if !page.full {
            break;
        }
    }
    assert_eq!(paged, all.events.iter().map(|e| e.key()).collect::<Vec<_>>());
    // At the tip, nothing new; the next event shows up after the same cursor.
    assert!(client.list_events(cursor.as_deref(), 2).await.unwrap().events.is_empty());
    ledger.stake(staker, "worker-3", 1, 6).unwrap();
    let next = client.list_events(cursor.as_deref(), 2).await.unwrap();
    assert_eq!(next.events.len(), 1);

    // A client for another package sees none of these events.
    let other = ChainClient::new(&url, Address::new([1; 32])).unwrap();
    assert!(other.list_events(None, 100).await.unwrap().events.is_empty());
    // A cursor the ledger never issued is an error, not a restart from genesis.
    assert!(matches!(client.list_events(Some(b"junk"), 2).await, Err(ChainError::Rpc(_))));
}
