//! The events our Move package emits, their BCS layouts (field by field as
//! contracts/k8s_gateway declares them), and one event as the chain delivers it.

use sui_sdk_types::Address;

use crate::bcs::{Reader, Writer};
use crate::stake::DecodeError;

/// `staking::StakeEvent`: a new stake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeEvent {
    pub stake_id: Address,
    pub staker: Address,
    pub amount: u64,
    pub node_id: String,
    pub staked_at: u64,
}

/// `staking::UnstakeEvent`: the staker asked for the stake back; it no longer backs anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnstakeEvent {
    pub stake_id: Address,
    pub staker: Address,
    pub amount: u64,
    pub locked_until: u64,
}

/// `staking::SlashEvent`: the stake was slashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashEvent {
    pub stake_id: Address,
    pub staker: Address,
    pub amount: u64,
    pub reason: String,
}

/// `k8s_gateway::K8sAPIRequest`: a Kubernetes API request submitted as a Sui transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sApiRequest {
    pub method: String,
    pub path: String,
    pub namespace: String,
    pub resource_type: String,
    pub payload: Vec<u8>,
    pub sender: Address,
    /// Milliseconds, from the chain's clock.
    pub timestamp: u64,
}

impl StakeEvent {
    pub const MOVE_NAME: &str = "staking::StakeEvent";
    pub const LAYOUT: &[(&str, &str)] =
        &[("stake_id", "ID"), ("staker", "address"), ("amount", "u64"), ("node_id", "String"), ("staked_at", "u64")];

    pub fn to_bcs(&self) -> Vec<u8> {
        Writer::default().address(&self.stake_id).address(&self.staker).u64(self.amount).string(&self.node_id).u64(self.staked_at).finish()
    }

    pub fn from_bcs(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(b);
        let e = StakeEvent {
            stake_id: r.address()?,
            staker: r.address()?,
            amount: r.u64()?,
            node_id: r.string("node_id")?,
            staked_at: r.u64()?,
        };
        r.finish()?;
        Ok(e)
    }
}

impl UnstakeEvent {
    pub const MOVE_NAME: &str = "staking::UnstakeEvent";
    pub const LAYOUT: &[(&str, &str)] = &[("stake_id", "ID"), ("staker", "address"), ("amount", "u64"), ("locked_until", "u64")];

    pub fn to_bcs(&self) -> Vec<u8> {
        Writer::default().address(&self.stake_id).address(&self.staker).u64(self.amount).u64(self.locked_until).finish()
    }

    pub fn from_bcs(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(b);
        let e = UnstakeEvent { stake_id: r.address()?, staker: r.address()?, amount: r.u64()?, locked_until: r.u64()? };
        r.finish()?;
        Ok(e)
    }
}

impl SlashEvent {
    pub const MOVE_NAME: &str = "staking::SlashEvent";
    pub const LAYOUT: &[(&str, &str)] = &[("stake_id", "ID"), ("staker", "address"), ("amount", "u64"), ("reason", "String")];

    pub fn to_bcs(&self) -> Vec<u8> {
        Writer::default().address(&self.stake_id).address(&self.staker).u64(self.amount).string(&self.reason).finish()
    }

    pub fn from_bcs(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(b);
        let e = SlashEvent { stake_id: r.address()?, staker: r.address()?, amount: r.u64()?, reason: r.string("reason")? };
        r.finish()?;
        Ok(e)
    }
}

impl K8sApiRequest {
    pub const MOVE_NAME: &str = "k8s_gateway::K8sAPIRequest";
    pub const LAYOUT: &[(&str, &str)] = &[
        ("method", "String"),
        ("path", "String"),
        ("namespace", "String"),
        ("resource_type", "String"),
        ("payload", "vector<u8>"),
        ("sender", "address"),
        ("timestamp", "u64"),
    ];

    pub fn to_bcs(&self) -> Vec<u8> {
        Writer::default()
            .string(&self.method)
            .string(&self.path)
            .string(&self.namespace)
            .string(&self.resource_type)
            .bytes(&self.payload)
            .address(&self.sender)
            .u64(self.timestamp)
            .finish()
    }

    pub fn from_bcs(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(b);
        let e = K8sApiRequest {
            method: r.string("method")?,
            path: r.string("path")?,
            namespace: r.string("namespace")?,
            resource_type: r.string("resource_type")?,
            payload: r.bytes("payload")?,
            sender: r.address()?,
            timestamp: r.u64()?,
        };
        r.finish()?;
        Ok(e)
    }
}

/// One of our package's events, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageEvent {
    Stake(StakeEvent),
    Unstake(UnstakeEvent),
    Slash(SlashEvent),
    Request(K8sApiRequest),
}

/// An event as the chain delivers it, with its place in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEvent {
    pub checkpoint: u64,
    /// Base58 transaction digest.
    pub tx_digest: String,
    pub event_index: u32,
    pub sender: Address,
    pub event_type: String,
    pub contents: Vec<u8>,
    /// The opaque resume point just after this event.
    pub cursor: Vec<u8>,
}

impl ChainEvent {
    /// `<digest>/<index>`: the event's identity, used as the idempotency key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.tx_digest, self.event_index)
    }

    /// Decodes the contents if the type is one of `package`'s events we act on; `Ok(None)`
    /// for its other events (results, registrations).
    pub fn decode(&self, package: &Address) -> Result<Option<PackageEvent>, DecodeError> {
        let Some(name) = strip_package(&self.event_type, package) else {
            return Ok(None);
        };
        Ok(Some(match name {
            StakeEvent::MOVE_NAME => PackageEvent::Stake(StakeEvent::from_bcs(&self.contents)?),
            UnstakeEvent::MOVE_NAME => PackageEvent::Unstake(UnstakeEvent::from_bcs(&self.contents)?),
            SlashEvent::MOVE_NAME => PackageEvent::Slash(SlashEvent::from_bcs(&self.contents)?),
            K8sApiRequest::MOVE_NAME => PackageEvent::Request(K8sApiRequest::from_bcs(&self.contents)?),
            _ => return Ok(None),
        }))
    }
}

/// `module::Name` if `ty` is a type of `package` (addresses compare by value).
fn strip_package<'a>(ty: &'a str, package: &Address) -> Option<&'a str> {
    let (addr, rest) = ty.split_once("::")?;
    let addr: Address = addr.parse().ok()?;
    (addr == *package).then_some(rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chain_event(ty: String, contents: Vec<u8>) -> ChainEvent {
        ChainEvent { checkpoint: 1, tx_digest: "d".into(), event_index: 0, sender: Address::ZERO, event_type: ty, contents, cursor: vec![] }
    }

    #[test]
    fn events_round_trip_and_decode_by_type() {
        let pkg = Address::new([7; 32]);
        let req = K8sApiRequest {
            method: "POST".into(),
            path: "/api/v1/namespaces/default/configmaps".into(),
            namespace: "default".into(),
            resource_type: "configmaps".into(),
            payload: vec![0xff; 300],
            sender: Address::new([3; 32]),
            timestamp: 5,
        };
        let e = chain_event(format!("{pkg}::{}", K8sApiRequest::MOVE_NAME), req.to_bcs());
        assert_eq!(e.decode(&pkg).unwrap(), Some(PackageEvent::Request(req)));
        // The short form of the address names the same package.
        let slash = SlashEvent { stake_id: Address::new([1; 32]), staker: Address::new([2; 32]), amount: 9, reason: "double sign".into() };
        let short = chain_event(format!("0x{}::{}", hex::encode([7u8; 32]), SlashEvent::MOVE_NAME), slash.to_bcs());
        assert_eq!(short.decode(&pkg).unwrap(), Some(PackageEvent::Slash(slash)));
        // Another package's event of the same name is not ours.
        let other = chain_event(format!("{}::{}", Address::new([8; 32]), SlashEvent::MOVE_NAME), vec![]);
        assert_eq!(other.decode(&pkg).unwrap(), None);
    }

    #[test]
    fn damaged_contents_are_errors() {
        let pkg = Address::new([7; 32]);
        let s = StakeEvent { stake_id: Address::ZERO, staker: Address::ZERO, amount: 1, node_id: "n".into(), staked_at: 2 }.to_bcs();
        for n in 0..s.len() {
            assert!(chain_event(format!("{pkg}::{}", StakeEvent::MOVE_NAME), s[..n].to_vec()).decode(&pkg).is_err());
        }
        let mut long = s.clone();
        long.push(1);
        assert!(chain_event(format!("{pkg}::{}", StakeEvent::MOVE_NAME), long).decode(&pkg).is_err());
    }
}
