//! The chain client, over gRPC `sui.rpc.v2` (Sui's JSON-RPC is retired on public full nodes).
//! The same code talks to a Sui full node and to the embedded development ledger. Every call
//! has a deadline; transient failures (unavailable, deadline, overload) are retried with
//! exponential back-off and jitter; no answer from the chain is ever taken as a yes.

use std::time::Duration;

use sui_rpc::field::{FieldMask, FieldMaskUtil as _};
use sui_rpc::proto::sui::rpc::v2::{
    EventFilter, EventLiteral, EventTerm, EventTypeFilter, GetObjectRequest, GetServiceInfoRequest, ListEventsRequest, QueryOptions,
    event_literal,
};
use sui_sdk_types::Address;

use crate::events::ChainEvent;
use crate::stake::{DecodeError, StakeRecord, stake_record_type};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the chain is unreachable: {0}")]
    Unavailable(String),
    #[error("no object {0} on chain")]
    NotFound(String),
    #[error("object {id} is a {found}, not a {expected}")]
    WrongType { id: String, expected: String, found: String },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the chain answered with an error: {0}")]
    Rpc(String),
}

/// One read of the event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<ChainEvent>,
    /// Where to resume after this page (the last watermark), when the node sent one. It may
    /// lie past the last event when the node scanned further without a match.
    pub cursor: Option<Vec<u8>>,
    /// True when the page ended because of the limit: more may follow at once.
    pub full: bool,
}

/// What the node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub chain_id: String,
    pub chain: String,
    pub checkpoint_height: u64,
    pub server: String,
}

#[derive(Clone)]
pub struct ChainClient {
    client: sui_rpc::Client,
    endpoint: String,
    package: Address,
    timeout: Duration,
    attempts: u32,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient").field("endpoint", &self.endpoint).field("package", &self.package.to_string()).finish_non_exhaustive()
    }
}

impl ChainClient {
    /// A client of `endpoint` (`https://fullnode…:443` or `http://127.0.0.1:PORT`) for the
    /// objects and events of `package`. Connects lazily.
    pub fn new(endpoint: &str, package: Address) -> Result<ChainClient, ChainError> {
        let client =
            sui_rpc::Client::new(endpoint.to_string()).map_err(|e| ChainError::Rpc(format!("endpoint {endpoint:?}: {}", e.message())))?;
        Ok(ChainClient { client, endpoint: endpoint.to_string(), package, timeout: Duration::from_secs(5), attempts: 3 })
    }

    /// Per-call deadline and attempts (at least one).
    pub fn with_limits(mut self, timeout: Duration, attempts: u32) -> ChainClient {
        self.timeout = timeout;
        self.attempts = attempts.max(1);
        self
    }

    pub fn package(&self) -> &Address {
        &self.package
    }

    pub async fn service_info(&self) -> Result<ServiceInfo, ChainError> {
        let r = self.call(|mut c| async move { c.ledger_client().get_service_info(GetServiceInfoRequest::default()).await }).await?;
        Ok(ServiceInfo {
            chain_id: r.chain_id.unwrap_or_default(),
            chain: r.chain.unwrap_or_default(),
            checkpoint_height: r.checkpoint_height.unwrap_or_default(),
            server: r.server.unwrap_or_default(),
        })
    }

    /// The stake record `id`: it must exist and be exactly our package's `StakeRecord`.
    pub async fn stake_record(&self, id: &Address) -> Result<StakeRecord, ChainError> {
        let req = GetObjectRequest::new(id).with_read_mask(FieldMask::from_paths(["object_id", "version", "object_type", "contents"]));
        let r = self
            .call(move |mut c| {
                let req = req.clone();
                async move { c.ledger_client().get_object(req).await }
            })
            .await
            .map_err(|e| match e {
                ChainError::NotFound(_) => ChainError::NotFound(id.to_string()),
                other => other,
            })?;
        let obj = r.object.ok_or_else(|| ChainError::NotFound(id.to_string()))?;
        let expected = stake_record_type(&self.package);
        let found = obj.object_type.unwrap_or_default();
        if !same_type(&found, &expected) {
            return Err(ChainError::WrongType { id: id.to_string(), expected, found });
        }
        let contents = obj.contents.and_then(|b| b.value).ok_or_else(|| DecodeError("the node sent no contents".into()))?;
        let rec = StakeRecord::from_bcs(&contents)?;
        if rec.id != *id {
            return Err(DecodeError(format!("the contents are of object {}, not {id}", rec.id)).into());
        }
        Ok(rec)
    }

    /// Our package's events strictly after `after` (from the start of the ledger if None),
    /// at most `limit`, in ledger order (LedgerService.ListEvents with an event-type filter on
    /// the package address). The whole page must arrive within the call deadline; a stream
    /// broken midway is `Unavailable` and the caller reads again from its own cursor.
    pub async fn list_events(&self, after: Option<&[u8]>, limit: u32) -> Result<EventPage, ChainError> {
        let mut literal = EventLiteral::default();
        let mut ty = EventTypeFilter::default();
        ty.event_type = Some(self.package.to_string());
        literal.predicate = Some(event_literal::Predicate::EventType(ty));
        let mut term = EventTerm::default();
        term.literals = vec![literal];
        let mut filter = EventFilter::default();
        filter.terms = vec![term];
        let mut options = QueryOptions::default();
        options.limit = Some(limit);
        options.after = after.map(|a| a.to_vec().into());
        let mut req = ListEventsRequest::default();
        req.filter = Some(filter);
        req.options = Some(options);
        req.read_mask = Some(FieldMask::from_paths([
            "package_id",
            "module",
            "sender",
            "event_type",
            "contents",
            "checkpoint",
            "transaction_digest",
            "event_index",
        ]));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut stream = self
            .call(move |mut c| {
                let req = req.clone();
                async move { c.ledger_client().list_events(req).await }
            })
            .await?;
        let mut page = EventPage::default();
        loop {
            let frame = match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => {
                    return Err(ChainError::Unavailable(format!(
                        "{} did not finish the event page within {:?}",
                        self.endpoint, self.timeout
                    )));
                }
                Ok(Err(s)) => return Err(ChainError::Unavailable(format!("{}: the event stream broke: {}", self.endpoint, s.message()))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(f))) => f,
            };
            let cursor = frame.watermark.as_ref().and_then(|w| w.cursor.as_ref()).map(|c| c.to_vec());
            if let Some(e) = frame.event {
                let at = |what: &str| DecodeError(format!("an event without {what}"));
                let sender = e.sender.as_deref().unwrap_or("").parse().map_err(|_| at("a valid sender"))?;
                page.events.push(ChainEvent {
                    checkpoint: e.checkpoint.ok_or_else(|| at("a checkpoint"))?,
                    tx_digest: e.transaction_digest.ok_or_else(|| at("a transaction digest"))?,
                    event_index: e.event_index.ok_or_else(|| at("an index"))?,
                    sender,
                    event_type: e.event_type.ok_or_else(|| at("a type"))?,
                    contents: e.contents.and_then(|b| b.value).map(|v| v.to_vec()).ok_or_else(|| at("contents"))?,
                    cursor: cursor.clone().ok_or_else(|| at("a watermark"))?,
                });
            }
            if cursor.is_some() {
                page.cursor = cursor;
            }
            if let Some(end) = frame.end {
                {
                    use sui_rpc::proto::sui::rpc::v2::QueryEndReason;
                    page.full =
                        matches!(end.reason, Some(r) if r == QueryEndReason::ItemLimit as i32 || r == QueryEndReason::ScanLimit as i32);
                }
                break;
            }
        }
        Ok(page)
    }

    /// Runs `f` with deadline and retries.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ChainError>
    where
        F: Fn(sui_rpc::Client) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut last = ChainError::Unavailable("no attempt made".into());
        for attempt in 0..self.attempts {
            if attempt > 0 {
                let jitter = rand::Rng::random_range(&mut rand::rng(), 0..=delay.as_millis() as u64 / 2);
                tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                delay *= 2;
            }
            match tokio::time::timeout(self.timeout, f(self.client.clone())).await {
                Err(_) => last = ChainError::Unavailable(format!("{} did not answer within {:?}", self.endpoint, self.timeout)),
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) => match s.code() {
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::ResourceExhausted | tonic::Code::Aborted => {
                        last = ChainError::Unavailable(format!("{}: {}", self.endpoint, s.message()));
                    }
                    tonic::Code::NotFound => return Err(ChainError::NotFound(s.message().to_string())),
                    _ => return Err(ChainError::Rpc(format!("{:?}: {}", s.code(), s.message()))),
                },
            }
        }
        Err(last)
    }
}

/// Type tags compare by value: `0x2::…` and the zero-padded form name the same address.
fn same_type(a: &str, b: &str) -> bool {
    fn canon(t: &str) -> String {
        let mut parts = t.splitn(2, "::");
        let addr = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("");
        let hex = addr.trim_start_matches("0x").trim_start_matches('0').to_ascii_lowercase();
        format!("0x{hex}::{rest}")
    }
    canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_tags_compare_by_address_value() {
        assert!(same_type("0x2::staking::StakeRecord", &format!("0x{}2::staking::StakeRecord", "0".repeat(63))));
        assert!(!same_type("0x2::staking::StakeRecord", "0x3::staking::StakeRecord"));
        assert!(!same_type("0x2::staking::StakeRecord", "0x2::staking::Other"));
    }
}
