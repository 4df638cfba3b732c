//! The on-chain stake record (`<package>::staking::StakeRecord`) and its BCS layout, field by
//! field as the Move struct declares it (contracts/k8s_gateway/sources/staking.move):
//! `id: UID` (32-byte address), `staker: address`, `amount: u64` (MIST), `node_id: String`,
//! `status: u8`, `staked_at: u64` (ms), `locked_until: u64` (ms).

use sui_sdk_types::Address;

use crate::bcs::{Reader, Writer};

/// `StakeRecord.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StakeStatus {
    Active,
    /// Unstake requested; the stake is locked until `locked_until` and no longer backs a node.
    Unstaking,
    Withdrawn,
    Slashed,
}

impl StakeStatus {
    pub fn code(self) -> u8 {
        match self {
            StakeStatus::Active => 0,
            StakeStatus::Unstaking => 1,
            StakeStatus::Withdrawn => 2,
            StakeStatus::Slashed => 3,
        }
    }

    pub fn from_code(c: u8) -> Option<StakeStatus> {
        match c {
            0 => Some(StakeStatus::Active),
            1 => Some(StakeStatus::Unstaking),
            2 => Some(StakeStatus::Withdrawn),
            3 => Some(StakeStatus::Slashed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StakeStatus::Active => "active",
            StakeStatus::Unstaking => "unstaking",
            StakeStatus::Withdrawn => "withdrawn",
            StakeStatus::Slashed => "slashed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeRecord {
    pub id: Address,
    pub staker: Address,
    pub amount: u64,
    pub node_id: String,
    pub status: StakeStatus,
    pub staked_at: u64,
    pub locked_until: u64,
}

/// The Move type of stake records published by `package`.
pub fn stake_record_type(package: &Address) -> String {
    format!("{package}::staking::StakeRecord")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stake record's contents do not decode: {0}")]
pub struct DecodeError(pub String);

impl StakeRecord {
    /// The struct's fields in declaration order, in Move spelling; a test holds the Move
    /// source to it.
    pub const LAYOUT: &[(&str, &str)] = &[
        ("id", "UID"),
        ("staker", "address"),
        ("amount", "u64"),
        ("node_id", "String"),
        ("status", "u8"),
        ("staked_at", "u64"),
        ("locked_until", "u64"),
    ];

    pub fn to_bcs(&self) -> Vec<u8> {
        Writer::default()
            .address(&self.id)
            .address(&self.staker)
            .u64(self.amount)
            .string(&self.node_id)
            .u8(self.status.code())
            .u64(self.staked_at)
            .u64(self.locked_until)
            .finish()
    }

    pub fn from_bcs(bytes: &[u8]) -> Result<StakeRecord, DecodeError> {
        let mut r = Reader(bytes);
        let rec = StakeRecord {
            id: r.address()?,
            staker: r.address()?,
            amount: r.u64()?,
            node_id: r.string("node_id")?,
            status: {
                let c = r.u8()?;
                StakeStatus::from_code(c).ok_or_else(|| DecodeError(format!("unknown status {c}")))?
            },
            staked_at: r.u64()?,
            locked_until: r.u64()?,
        };
        r.finish()?;
        Ok(rec)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(node: &str) -> StakeRecord {
        StakeRecord {
            id: Address::new([1; 32]),
            staker: Address::new([2; 32]),
            amount: 1_000_000_000,
            node_id: node.into(),
            status: StakeStatus::Slashed,
            staked_at: 1_790_000_000_000,
            locked_until: 1_790_604_800_000,
        }
    }

    #[test]
    fn the_layout_round_trips_and_matches_bcs() {
        let r = record("worker-1");
        let b = r.to_bcs();
        // 32 + 32 + 8 + (1 + 8) + 1 + 8 + 8
        assert_eq!(b.len(), 98);
        assert_eq!(b[72], 8, "the string's length prefix");
        assert_eq!(StakeRecord::from_bcs(&b), Ok(r));
        let long = record(&"n".repeat(200));
        assert_eq!(&long.to_bcs()[72..74], &[0xc8, 0x01], "ULEB128 of 200");
        assert_eq!(StakeRecord::from_bcs(&long.to_bcs()), Ok(long));
    }

    #[test]
    fn damaged_contents_are_errors() {
        let b = record("w").to_bcs();
        for n in 0..b.len() {
            assert!(StakeRecord::from_bcs(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(StakeRecord::from_bcs(&extra).is_err());
        let mut bad_status = b.clone();
        bad_status[32 + 32 + 8 + 2] = 9;
        assert!(StakeRecord::from_bcs(&bad_status).is_err());
    }
}
