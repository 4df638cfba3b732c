/// Worker stakes. A worker node is admitted to the cluster by locking SUI here: `stake`
/// moves the coin into the one shared `StakePool` and creates a shared `StakeRecord` that
/// names the staker and the Kubernetes node the stake backs. The master reads the record
/// (by object id, decoding its BCS contents) when the worker registers, and follows the
/// events below to notice when a stake stops backing a node.
///
/// Life of a stake: active (0) → `request_unstake` → unstaking (1) → after `lock_ms`,
/// `withdraw` → withdrawn (2). The admin may `slash` an active or unstaking stake → slashed
/// (3). The lock exists so that misbehaviour seen shortly before an unstake can still be
/// slashed.
///
/// Slashed SUI stays in the pool's balance, and no function in this package takes it out:
/// it is burned in effect. The admin does not receive it, so slashing earns the admin
/// nothing. The pool therefore holds at least the sum of the `amount`s of all active and
/// unstaking records; anything above that sum has been slashed.
///
/// Layout contract: the Rust side (crates/chain, `daas_chain::stake::StakeRecord` and
/// `daas_chain::events`) decodes `StakeRecord` and the three events field by field, and a
/// test (crates/chain/tests/move_package.rs) holds these declarations to its layouts.
/// Change a field here only together with the decoder.
module k8s_gateway::staking;

use std::string::String;
use sui::balance::{Self, Balance};
use sui::clock::Clock;
use sui::coin::{Self, Coin};
use sui::event;
use sui::sui::SUI;

// === Status codes of `StakeRecord.status` ===

/// The stake backs its node.
const STATUS_ACTIVE: u8 = 0;
/// The staker asked for the stake back; it backs nothing and is locked until `locked_until`.
const STATUS_UNSTAKING: u8 = 1;
/// Paid back to the staker; `amount` is 0.
const STATUS_WITHDRAWN: u8 = 2;
/// Slashed by the admin; `amount` is 0 and the SUI stays in the pool.
const STATUS_SLASHED: u8 = 3;

// === Defaults and bounds ===

/// How long an unstaking stake stays locked by default: 7 days, in milliseconds.
const DEFAULT_LOCK_MS: u64 = 604_800_000;
/// Least stake by default, in MIST. It equals the master's default `--min-stake`, so that by
/// default the chain accepts no stake the master would refuse for being too small.
const DEFAULT_MIN_STAKE: u64 = 1_000;
/// Longest lock `set_params` accepts: 365 days. It also keeps `now + lock_ms` far from
/// overflow.
const MAX_LOCK_MS: u64 = 31_536_000_000;
/// Longest node id: a Kubernetes node name is a DNS subdomain, at most 253 bytes.
const MAX_NODE_ID_BYTES: u64 = 253;

// === Abort codes ===

/// The coin is worth less than the pool's `min_stake`.
const EBelowMinStake: u64 = 0;
/// The node id is empty.
const EEmptyNodeId: u64 = 1;
/// The node id is longer than a Kubernetes node name can be.
const ENodeIdTooLong: u64 = 2;
/// Only the staker may unstake or withdraw.
const ENotStaker: u64 = 3;
/// `request_unstake` needs an active stake.
const ENotActive: u64 = 4;
/// `withdraw` needs a stake in the unstaking state.
const ENotUnstaking: u64 = 5;
/// `withdraw` before `locked_until`.
const EStillLocked: u64 = 6;
/// Only active and unstaking stakes can be slashed.
const ENotSlashable: u64 = 7;
/// A slash must say why.
const EEmptyReason: u64 = 8;
/// `set_params`: `min_stake` must be at least 1 MIST.
const EZeroMinStake: u64 = 9;
/// `set_params`: `lock_ms` above `MAX_LOCK_MS`.
const ELockTooLong: u64 = 10;

// === Objects ===

/// One stake. Shared, so that the admin can slash it; only `staker` can unstake or withdraw
/// it. `amount` is the MIST held in the pool on the staker's behalf (0 once withdrawn or
/// slashed). Times are milliseconds from the chain's clock; `locked_until` is 0 until an
/// unstake is requested.
public struct StakeRecord has key {
    id: UID,
    staker: address,
    amount: u64,
    node_id: String,
    status: u8,
    staked_at: u64,
    locked_until: u64,
}

/// The staked SUI of every stake, and the rules for new ones. Created once, in `init`, and
/// shared.
public struct StakePool has key {
    id: UID,
    balance: Balance<SUI>,
    lock_ms: u64,
    min_stake: u64,
}

/// Authority to slash stakes, change the pool's rules and (in `k8s_gateway`) set the
/// enclave PCRs. Given to the publisher by `init`.
public struct AdminCap has key, store {
    id: UID,
}

// === Events ===

/// A new stake.
public struct StakeEvent has copy, drop {
    stake_id: ID,
    staker: address,
    amount: u64,
    node_id: String,
    staked_at: u64,
}

/// The staker asked for the stake back; from now on it backs nothing.
public struct UnstakeEvent has copy, drop {
    stake_id: ID,
    staker: address,
    amount: u64,
    locked_until: u64,
}

/// The stake was slashed; `amount` is what it held.
public struct SlashEvent has copy, drop {
    stake_id: ID,
    staker: address,
    amount: u64,
    reason: String,
}

// === Publishing ===

fun init(ctx: &mut TxContext) {
    transfer::transfer(AdminCap { id: object::new(ctx) }, ctx.sender());
    transfer::share_object(StakePool {
        id: object::new(ctx),
        balance: balance::zero(),
        lock_ms: DEFAULT_LOCK_MS,
        min_stake: DEFAULT_MIN_STAKE,
    });
}

// === Staker's functions ===

/// Stakes all of `coin` for the Kubernetes node `node_id`, on behalf of the sender. Creates
/// and shares an active `StakeRecord`, emits `StakeEvent`, and returns the record's id.
public fun stake(
    pool: &mut StakePool,
    coin: Coin<SUI>,
    node_id: String,
    clock: &Clock,
    ctx: &mut TxContext,
): ID {
    let amount = coin.value();
    assert!(amount >= pool.min_stake, EBelowMinStake);
    assert!(!node_id.is_empty(), EEmptyNodeId);
    assert!(node_id.length() <= MAX_NODE_ID_BYTES, ENodeIdTooLong);

    pool.balance.join(coin.into_balance());
    let now = clock.timestamp_ms();
    let record = StakeRecord {
        id: object::new(ctx),
        staker: ctx.sender(),
        amount,
        node_id,
        status: STATUS_ACTIVE,
        staked_at: now,
        locked_until: 0,
    };
    let stake_id = object::id(&record);
    event::emit(StakeEvent {
        stake_id,
        staker: record.staker,
        amount,
        node_id: record.node_id,
        staked_at: now,
    });
    transfer::share_object(record);
    stake_id
}

/// Starts the unstaking of an active stake: it stops backing its node now and can be
/// withdrawn once the pool's current `lock_ms` has passed. Later changes to `lock_ms` do not
/// move `locked_until`. Emits `UnstakeEvent`.
public fun request_unstake(
    pool: &StakePool,
    record: &mut StakeRecord,
    clock: &Clock,
    ctx: &TxContext,
) {
    assert!(ctx.sender() == record.staker, ENotStaker);
    assert!(record.status == STATUS_ACTIVE, ENotActive);

    record.status = STATUS_UNSTAKING;
    record.locked_until = clock.timestamp_ms() + pool.lock_ms;
    event::emit(UnstakeEvent {
        stake_id: object::id(record),
        staker: record.staker,
        amount: record.amount,
        locked_until: record.locked_until,
    });
}

/// Pays an unstaking stake back once its lock has passed, as a coin returned to the caller
/// (the staker), who transfers it on in the same transaction. The record stays, withdrawn,
/// with `amount` 0.
public fun withdraw(
    pool: &mut StakePool,
    record: &mut StakeRecord,
    clock: &Clock,
    ctx: &mut TxContext,
): Coin<SUI> {
    assert!(ctx.sender() == record.staker, ENotStaker);
    assert!(record.status == STATUS_UNSTAKING, ENotUnstaking);
    assert!(clock.timestamp_ms() >= record.locked_until, EStillLocked);

    let amount = record.amount;
    record.amount = 0;
    record.status = STATUS_WITHDRAWN;
    coin::take(&mut pool.balance, amount, ctx)
}

// === Admin's functions ===

/// Slashes an active or unstaking stake. Its SUI stays in the pool, where nothing can take
/// it out (see the module's documentation); the record becomes slashed with `amount` 0.
/// Emits `SlashEvent` with the amount the stake held and `reason`, which must not be empty.
public fun slash(_: &AdminCap, record: &mut StakeRecord, reason: String) {
    assert!(record.status == STATUS_ACTIVE || record.status == STATUS_UNSTAKING, ENotSlashable);
    assert!(!reason.is_empty(), EEmptyReason);

    let amount = record.amount;
    record.amount = 0;
    record.status = STATUS_SLASHED;
    event::emit(SlashEvent {
        stake_id: object::id(record),
        staker: record.staker,
        amount,
        reason,
    });
}

/// Sets the lock for future unstake requests and the least stake for future stakes.
/// Existing stakes keep what they have.
public fun set_params(_: &AdminCap, pool: &mut StakePool, lock_ms: u64, min_stake: u64) {
    assert!(lock_ms <= MAX_LOCK_MS, ELockTooLong);
    assert!(min_stake > 0, EZeroMinStake);
    pool.lock_ms = lock_ms;
    pool.min_stake = min_stake;
}

// === Reading ===

public fun staker(record: &StakeRecord): address { record.staker }

public fun amount(record: &StakeRecord): u64 { record.amount }

public fun node_id(record: &StakeRecord): &String { &record.node_id }

public fun status(record: &StakeRecord): u8 { record.status }

public fun staked_at(record: &StakeRecord): u64 { record.staked_at }

public fun locked_until(record: &StakeRecord): u64 { record.locked_until }

public fun is_active(record: &StakeRecord): bool { record.status == STATUS_ACTIVE }

public fun lock_ms(pool: &StakePool): u64 { pool.lock_ms }

public fun min_stake(pool: &StakePool): u64 { pool.min_stake }

/// All MIST in the pool: the active and unstaking stakes plus everything slashed.
public fun pool_balance(pool: &StakePool): u64 { pool.balance.value() }

// === Tests' access ===

#[test_only]
public fun init_for_testing(ctx: &mut TxContext) { init(ctx) }

#[test_only]
public fun stake_event(
    stake_id: ID,
    staker: address,
    amount: u64,
    node_id: String,
    staked_at: u64,
): StakeEvent {
    StakeEvent { stake_id, staker, amount, node_id, staked_at }
}

#[test_only]
public fun unstake_event(
    stake_id: ID,
    staker: address,
    amount: u64,
    locked_until: u64,
): UnstakeEvent {
    UnstakeEvent { stake_id, staker, amount, locked_until }
}

#[test_only]
public fun slash_event(stake_id: ID, staker: address, amount: u64, reason: String): SlashEvent {
    SlashEvent { stake_id, staker, amount, reason }
}
