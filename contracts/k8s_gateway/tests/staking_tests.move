/// Tests of `k8s_gateway::staking`: the life of a stake (stake, unstake, withdraw, slash),
/// who may do what, the pool's rules, and the events each step emits.
#[test_only]
module k8s_gateway::staking_tests;

use k8s_gateway::staking::{
    Self,
    AdminCap,
    StakePool,
    StakeRecord,
    StakeEvent,
    UnstakeEvent,
    SlashEvent,
};
use sui::clock::{Self, Clock};
use sui::coin;
use sui::event;
use sui::sui::SUI;
use sui::test_scenario::{Self as ts, Scenario};

const ADMIN: address = @0xAD;
const STAKER: address = @0x5A;
const OTHER: address = @0x07;

/// The clock's time when a test starts.
const START_MS: u64 = 1_790_000_000_000;
/// The pool's lock after `init`: 7 days.
const WEEK_MS: u64 = 604_800_000;
const ONE_SUI: u64 = 1_000_000_000;

/// Publishes the package as ADMIN and returns the scenario, in a new transaction by STAKER,
/// and a clock at START_MS.
fun publish(): (Scenario, Clock) {
    let mut scenario = ts::begin(ADMIN);
    staking::init_for_testing(scenario.ctx());
    let mut clock = clock::create_for_testing(scenario.ctx());
    clock.set_for_testing(START_MS);
    scenario.next_tx(STAKER);
    (scenario, clock)
}

/// Stakes `amount` MIST for `node` as `who`, in a transaction of its own; returns the
/// record's id. The next transaction is `who`'s too.
fun stake_as(
    scenario: &mut Scenario,
    clock: &Clock,
    who: address,
    amount: u64,
    node: vector<u8>,
): ID {
    scenario.next_tx(who);
    let mut pool = scenario.take_shared<StakePool>();
    let coin = coin::mint_for_testing<SUI>(amount, scenario.ctx());
    let id = staking::stake(&mut pool, coin, node.to_string(), clock, scenario.ctx());
    ts::return_shared(pool);
    scenario.next_tx(who);
    id
}

/// Requests the unstake of `id` as `who`, in a transaction of its own.
fun unstake_as(scenario: &mut Scenario, clock: &Clock, who: address, id: ID) {
    scenario.next_tx(who);
    let pool = scenario.take_shared<StakePool>();
    let mut record = scenario.take_shared_by_id<StakeRecord>(id);
    staking::request_unstake(&pool, &mut record, clock, scenario.ctx());
    ts::return_shared(record);
    ts::return_shared(pool);
    scenario.next_tx(who);
}

/// Withdraws `id` as `who` and returns how much was paid.
fun withdraw_as(scenario: &mut Scenario, clock: &Clock, who: address, id: ID): u64 {
    scenario.next_tx(who);
    let mut pool = scenario.take_shared<StakePool>();
    let mut record = scenario.take_shared_by_id<StakeRecord>(id);
    let paid = staking::withdraw(&mut pool, &mut record, clock, scenario.ctx());
    ts::return_shared(record);
    ts::return_shared(pool);
    scenario.next_tx(who);
    paid.burn_for_testing()
}

/// Slashes `id` as ADMIN, in a transaction of its own.
fun slash(scenario: &mut Scenario, id: ID, reason: vector<u8>) {
    scenario.next_tx(ADMIN);
    let cap = scenario.take_from_sender<AdminCap>();
    let mut record = scenario.take_shared_by_id<StakeRecord>(id);
    staking::slash(&cap, &mut record, reason.to_string());
    ts::return_shared(record);
    scenario.return_to_sender(cap);
    scenario.next_tx(ADMIN);
}

fun pool_balance(scenario: &Scenario): u64 {
    let pool = scenario.take_shared<StakePool>();
    let balance = pool.pool_balance();
    ts::return_shared(pool);
    balance
}

fun finish(scenario: Scenario, clock: Clock) {
    clock.destroy_for_testing();
    scenario.end();
}

#[test]
fun init_gives_the_admin_cap_to_the_publisher_and_shares_a_pool_with_defaults() {
    let (mut scenario, clock) = publish();
    scenario.next_tx(ADMIN);
    assert!(scenario.has_most_recent_for_sender<AdminCap>());
    let pool = scenario.take_shared<StakePool>();
    assert!(pool.lock_ms() == WEEK_MS);
    assert!(pool.min_stake() == 1_000);
    assert!(pool.pool_balance() == 0);
    ts::return_shared(pool);
    finish(scenario, clock);
}

#[test]
fun stake_creates_an_active_shared_record_and_emits_a_stake_event() {
    let (mut scenario, clock) = publish();
    let mut pool = scenario.take_shared<StakePool>();
    let coin = coin::mint_for_testing<SUI>(5 * ONE_SUI, scenario.ctx());
    let id = staking::stake(&mut pool, coin, b"worker-1".to_string(), &clock, scenario.ctx());
    // The event carries the record's id and everything the master needs.
    assert!(
        event::events_by_type<StakeEvent>() == vector[
            staking::stake_event(id, STAKER, 5 * ONE_SUI, b"worker-1".to_string(), START_MS),
        ],
    );
    assert!(pool.pool_balance() == 5 * ONE_SUI);
    ts::return_shared(pool);

    scenario.next_tx(OTHER);
    // Shared: anyone's transaction can read it.
    let record = scenario.take_shared_by_id<StakeRecord>(id);
    assert!(record.staker() == STAKER);
    assert!(record.amount() == 5 * ONE_SUI);
    assert!(*record.node_id() == b"worker-1".to_string());
    assert!(record.status() == 0);
    assert!(record.is_active());
    assert!(record.staked_at() == START_MS);
    assert!(record.locked_until() == 0);
    ts::return_shared(record);
    finish(scenario, clock);
}

#[test]
fun a_stake_of_exactly_the_minimum_is_accepted() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, 1_000, b"w");
    let record = scenario.take_shared_by_id<StakeRecord>(id);
    assert!(record.amount() == 1_000);
    ts::return_shared(record);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::EBelowMinStake)]
fun a_stake_below_the_minimum_aborts() {
    let (mut scenario, clock) = publish();
    stake_as(&mut scenario, &clock, STAKER, 999, b"worker-1");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::EEmptyNodeId)]
fun a_stake_without_a_node_id_aborts() {
    let (mut scenario, clock) = publish();
    stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENodeIdTooLong)]
fun a_node_id_longer_than_a_node_name_aborts() {
    let (mut scenario, clock) = publish();
    let mut node = b"";
    let mut i = 0;
    while (i < 254) {
        node.push_back(0x61);
        i = i + 1;
    };
    stake_as(&mut scenario, &clock, STAKER, ONE_SUI, node);
    finish(scenario, clock);
}

#[test]
fun unstake_locks_the_stake_and_withdraw_pays_it_back_when_the_lock_ends() {
    let (mut scenario, mut clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, 3 * ONE_SUI, b"worker-1");
    clock.increment_for_testing(1_000);

    let pool = scenario.take_shared<StakePool>();
    let mut record = scenario.take_shared_by_id<StakeRecord>(id);
    staking::request_unstake(&pool, &mut record, &clock, scenario.ctx());
    let until = START_MS + 1_000 + WEEK_MS;
    assert!(
        event::events_by_type<UnstakeEvent>() == vector[
            staking::unstake_event(id, STAKER, 3 * ONE_SUI, until),
        ],
    );
    assert!(record.status() == 1);
    assert!(!record.is_active());
    assert!(record.locked_until() == until);
    // Still held until withdrawn.
    assert!(record.amount() == 3 * ONE_SUI);
    ts::return_shared(record);
    ts::return_shared(pool);

    // The lock ends at `locked_until` exactly.
    clock.set_for_testing(until);
    assert!(withdraw_as(&mut scenario, &clock, STAKER, id) == 3 * ONE_SUI);
    let record = scenario.take_shared_by_id<StakeRecord>(id);
    assert!(record.status() == 2);
    assert!(record.amount() == 0);
    ts::return_shared(record);
    assert!(pool_balance(&scenario) == 0);
    finish(scenario, clock);
}

#[test]
fun a_new_lock_applies_to_later_unstakes_only() {
    let (mut scenario, clock) = publish();
    let first = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"a");
    let second = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"b");
    unstake_as(&mut scenario, &clock, STAKER, first);

    scenario.next_tx(ADMIN);
    let cap = scenario.take_from_sender<AdminCap>();
    let mut pool = scenario.take_shared<StakePool>();
    staking::set_params(&cap, &mut pool, 60_000, 1_000);
    ts::return_shared(pool);
    scenario.return_to_sender(cap);

    unstake_as(&mut scenario, &clock, STAKER, second);
    let a = scenario.take_shared_by_id<StakeRecord>(first);
    let b = scenario.take_shared_by_id<StakeRecord>(second);
    assert!(a.locked_until() == START_MS + WEEK_MS);
    assert!(b.locked_until() == START_MS + 60_000);
    ts::return_shared(a);
    ts::return_shared(b);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::EStillLocked)]
fun withdraw_before_the_lock_ends_aborts() {
    let (mut scenario, mut clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    unstake_as(&mut scenario, &clock, STAKER, id);
    clock.increment_for_testing(WEEK_MS - 1);
    withdraw_as(&mut scenario, &clock, STAKER, id);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotUnstaking)]
fun withdraw_without_an_unstake_request_aborts() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    withdraw_as(&mut scenario, &clock, STAKER, id);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotUnstaking)]
fun a_second_withdraw_aborts() {
    let (mut scenario, mut clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    unstake_as(&mut scenario, &clock, STAKER, id);
    clock.increment_for_testing(WEEK_MS);
    withdraw_as(&mut scenario, &clock, STAKER, id);
    withdraw_as(&mut scenario, &clock, STAKER, id);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotStaker)]
fun only_the_staker_can_request_an_unstake() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    unstake_as(&mut scenario, &clock, OTHER, id);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotStaker)]
fun only_the_staker_can_withdraw() {
    let (mut scenario, mut clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    unstake_as(&mut scenario, &clock, STAKER, id);
    clock.increment_for_testing(WEEK_MS);
    withdraw_as(&mut scenario, &clock, OTHER, id);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotActive)]
fun a_second_unstake_request_aborts() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    unstake_as(&mut scenario, &clock, STAKER, id);
    unstake_as(&mut scenario, &clock, STAKER, id);
    finish(scenario, clock);
}

#[test]
fun slash_keeps_the_sui_in_the_pool_and_emits_a_slash_event() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, 2 * ONE_SUI, b"worker-1");

    scenario.next_tx(ADMIN);
    let cap = scenario.take_from_sender<AdminCap>();
    let mut record = scenario.take_shared_by_id<StakeRecord>(id);
    staking::slash(&cap, &mut record, b"double-signed a block".to_string());
    assert!(
        event::events_by_type<SlashEvent>() == vector[
            staking::slash_event(id, STAKER, 2 * ONE_SUI, b"double-signed a block".to_string()),
        ],
    );
    assert!(record.status() == 3);
    assert!(record.amount() == 0);
    ts::return_shared(record);
    scenario.return_to_sender(cap);

    scenario.next_tx(ADMIN);
    // Nobody was paid: the SUI is still in the pool, and no stake claims it.
    assert!(pool_balance(&scenario) == 2 * ONE_SUI);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotUnstaking)]
fun an_unstaking_stake_can_be_slashed_and_then_not_withdrawn() {
    let (mut scenario, mut clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    unstake_as(&mut scenario, &clock, STAKER, id);
    slash(&mut scenario, id, b"misbehaved before unstaking");
    clock.increment_for_testing(WEEK_MS);
    withdraw_as(&mut scenario, &clock, STAKER, id);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotSlashable)]
fun a_slashed_stake_cannot_be_slashed_again() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    slash(&mut scenario, id, b"first");
    slash(&mut scenario, id, b"second");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotSlashable)]
fun a_withdrawn_stake_cannot_be_slashed() {
    let (mut scenario, mut clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    unstake_as(&mut scenario, &clock, STAKER, id);
    clock.increment_for_testing(WEEK_MS);
    withdraw_as(&mut scenario, &clock, STAKER, id);
    slash(&mut scenario, id, b"too late");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::EEmptyReason)]
fun a_slash_without_a_reason_aborts() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    slash(&mut scenario, id, b"");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ENotActive)]
fun a_slashed_stake_cannot_be_unstaked() {
    let (mut scenario, clock) = publish();
    let id = stake_as(&mut scenario, &clock, STAKER, ONE_SUI, b"worker-1");
    slash(&mut scenario, id, b"misbehaved");
    unstake_as(&mut scenario, &clock, STAKER, id);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::EBelowMinStake)]
fun set_params_raises_the_minimum_for_new_stakes() {
    let (mut scenario, clock) = publish();
    scenario.next_tx(ADMIN);
    let cap = scenario.take_from_sender<AdminCap>();
    let mut pool = scenario.take_shared<StakePool>();
    staking::set_params(&cap, &mut pool, WEEK_MS, ONE_SUI);
    assert!(pool.min_stake() == ONE_SUI);
    ts::return_shared(pool);
    scenario.return_to_sender(cap);

    stake_as(&mut scenario, &clock, STAKER, ONE_SUI - 1, b"worker-1");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::EZeroMinStake)]
fun set_params_refuses_a_zero_minimum() {
    let (mut scenario, clock) = publish();
    scenario.next_tx(ADMIN);
    let cap = scenario.take_from_sender<AdminCap>();
    let mut pool = scenario.take_shared<StakePool>();
    staking::set_params(&cap, &mut pool, WEEK_MS, 0);
    ts::return_shared(pool);
    scenario.return_to_sender(cap);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = staking::ELockTooLong)]
fun set_params_refuses_a_lock_over_a_year() {
    let (mut scenario, clock) = publish();
    scenario.next_tx(ADMIN);
    let cap = scenario.take_from_sender<AdminCap>();
    let mut pool = scenario.take_shared<StakePool>();
    staking::set_params(&cap, &mut pool, 31_536_000_001, 1_000);
    ts::return_shared(pool);
    scenario.return_to_sender(cap);
    finish(scenario, clock);
}
