//! What K3s-DaaS needs from Sui that is not the chain itself: Sui keys as the Sui CLI writes
//! them, personal-message signatures (Ed25519, Secp256k1, Secp256r1) made and checked exactly
//! as Sui and Mysten's SDKs do, single-use login challenges, and the seal tokens the master
//! issues to staked workers and tenants.
#![forbid(unsafe_code)]

mod bcs;
pub mod challenge;
pub mod client;
pub mod events;
pub mod keys;
pub mod ledger;
pub mod signature;
pub mod stake;
pub mod token;

pub use challenge::{Challenge, ChallengeError, Challenges, Purpose};
pub use client::{ChainClient, ChainError, EventPage, ServiceInfo};
pub use events::{ChainEvent, K8sApiRequest, PackageEvent, SlashEvent, StakeEvent, UnstakeEvent};
pub use keys::{KeyError, SuiKey};
pub use ledger::{DevLedger, LedgerError};
pub use signature::{SignatureError, verify_personal_message};
pub use stake::{StakeRecord, StakeStatus, stake_record_type};
pub use sui_sdk_types::Address;
pub use token::{Claims, IssuedToken, TokenError, TokenIssuer, TokenVerifier};
