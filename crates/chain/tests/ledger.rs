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

    ledger.set_status(&rec.id, StakeStatus::Slashed).unwrap();
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
