/// Tests of `k8s_gateway::k8s_gateway`: request validation and its event, enclave
/// registration under the configured PCRs, and results recorded only by the enclave.
///
/// A signed Nitro attestation document cannot be made in a unit test, so registration is
/// driven through `register_for_testing`, which enters `register_enclave` after the document
/// has been taken apart; the taking apart itself (finding PCR0-2 by index, the key's
/// presence) is not covered here.
#[test_only]
module k8s_gateway::k8s_gateway_tests;

use k8s_gateway::k8s_gateway::{
    Self as gateway,
    Enclave,
    EnclaveConfig,
    EnclaveRegistry,
    EnclaveRegistered,
    K8sAPIRequest,
    RequestResult,
};
use k8s_gateway::staking::{Self, AdminCap};
use std::bcs;
use sui::clock::{Self, Clock};
use sui::event;
use sui::test_scenario::{Self as ts, Scenario};

const ADMIN: address = @0xAD;
const CLIENT: address = @0xC1;
const OTHER: address = @0x07;

const START_MS: u64 = 1_790_000_000_000;

/// An Ed25519 public key (bytes 0x00..0x1f) and its Sui address, as Mysten's TypeScript SDK
/// computes it (`new Ed25519PublicKey(pk).toSuiAddress()`).
const PK: vector<u8> = x"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const PK_ADDRESS: address = @0x0ddaaec3ffac93977c83c3d7440e9e65663850d4861be2f48532548d0a463336;

const DIGEST: vector<u8> = x"1111111111111111111111111111111111111111111111111111111111111111";

/// Publishes the package as ADMIN; returns the scenario, in a new transaction by CLIENT, and a
/// clock at START_MS.
fun publish(): (Scenario, Clock) {
    let mut scenario = ts::begin(ADMIN);
    staking::init_for_testing(scenario.ctx());
    gateway::init_for_testing(scenario.ctx());
    let mut clock = clock::create_for_testing(scenario.ctx());
    clock.set_for_testing(START_MS);
    scenario.next_tx(CLIENT);
    (scenario, clock)
}

fun finish(scenario: Scenario, clock: Clock) {
    clock.destroy_for_testing();
    scenario.end();
}

/// A 48-byte PCR value, every byte `fill`.
fun pcr(fill: u8): vector<u8> {
    let mut v = vector[];
    let mut i = 0;
    while (i < 48) {
        v.push_back(fill);
        i = i + 1;
    };
    v
}

/// `n` bytes of printable-or-control ASCII (so also valid UTF-8), n ≤ 65_809. Built by
/// natively BCS-serializing nested vectors of one address, then trimmed: a byte-by-byte loop
/// to 64 KiB could run into the unit-test gas bound.
fun ascii(n: u64): vector<u8> {
    let a = @0x6161616161616161616161616161616161616161616161616161616161616161;
    // 8 addresses: 256 bytes, 257 with its length prefix.
    let l1 = vector[a, a, a, a, a, a, a, a];
    // 16 of those: 4_113 bytes with its length prefix.
    let l2 = vector[l1, l1, l1, l1, l1, l1, l1, l1, l1, l1, l1, l1, l1, l1, l1, l1];
    let mut blocks = vector[l2];
    while (blocks.length() * 4_113 + 1 < n) blocks.push_back(l2);
    let mut out = bcs::to_bytes(&blocks);
    assert!(out.length() >= n);
    while (out.length() > n) {
        out.pop_back();
    };
    out
}

fun submit(
    scenario: &mut Scenario,
    clock: &Clock,
    method: vector<u8>,
    path: vector<u8>,
    payload: vector<u8>,
) {
    gateway::submit_request(
        method.to_string(),
        path.to_string(),
        b"default".to_string(),
        b"configmaps".to_string(),
        payload,
        clock,
        scenario.ctx(),
    );
}

/// Sets the expected PCRs as ADMIN, in a transaction of its own.
fun set_pcrs(scenario: &mut Scenario, pcr0: vector<u8>, pcr1: vector<u8>, pcr2: vector<u8>) {
    scenario.next_tx(ADMIN);
    let cap = scenario.take_from_sender<AdminCap>();
    let mut config = scenario.take_shared<EnclaveConfig>();
    gateway::update_pcrs(&cap, &mut config, pcr0, pcr1, pcr2);
    ts::return_shared(config);
    scenario.return_to_sender(cap);
    scenario.next_tx(ADMIN);
}

/// Registers an enclave that attested these PCRs and key, in a transaction of its own (by
/// OTHER: registration is open to anyone holding a valid document).
fun register(
    scenario: &mut Scenario,
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
    pk: vector<u8>,
): ID {
    scenario.next_tx(OTHER);
    let config = scenario.take_shared<EnclaveConfig>();
    let id = gateway::register_for_testing(
        &config,
        pcr0,
        pcr1,
        pcr2,
        pk,
        START_MS - 5,
        scenario.ctx(),
    );
    ts::return_shared(config);
    scenario.next_tx(OTHER);
    id
}

/// Records a result as `who` for enclave `enclave`, in a transaction of its own.
fun record(
    scenario: &mut Scenario,
    who: address,
    enclave: ID,
    digest: vector<u8>,
    message: vector<u8>,
) {
    scenario.next_tx(who);
    let mut registry = scenario.take_shared<EnclaveRegistry>();
    let config = scenario.take_shared<EnclaveConfig>();
    let enclave = scenario.take_shared_by_id<Enclave>(enclave);
    gateway::record_result(
        &mut registry,
        &config,
        &enclave,
        digest,
        0,
        200,
        message.to_string(),
        scenario.ctx(),
    );
    ts::return_shared(enclave);
    ts::return_shared(config);
    ts::return_shared(registry);
    scenario.next_tx(who);
}

// === Requests ===

#[test]
fun submit_request_emits_the_request_with_its_sender_and_the_chain_time() {
    let (mut scenario, clock) = publish();
    submit(
        &mut scenario,
        &clock,
        b"POST",
        b"/api/v1/namespaces/default/configmaps",
        b"{\"kind\":\"ConfigMap\"}",
    );
    assert!(
        event::events_by_type<K8sAPIRequest>() == vector[
            gateway::request_event(
                b"POST".to_string(),
                b"/api/v1/namespaces/default/configmaps".to_string(),
                b"default".to_string(),
                b"configmaps".to_string(),
                b"{\"kind\":\"ConfigMap\"}",
                CLIENT,
                START_MS,
            ),
        ],
    );
    finish(scenario, clock);
}

#[test]
fun every_allowed_method_is_accepted() {
    let (mut scenario, clock) = publish();
    let methods = vector[b"GET", b"POST", b"PUT", b"PATCH", b"DELETE"];
    let mut i = 0;
    while (i < methods.length()) {
        submit(&mut scenario, &clock, methods[i], b"/api/v1/pods", b"");
        i = i + 1;
    };
    let effects = scenario.next_tx(CLIENT);
    assert!(effects.num_user_events() == 5);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EInvalidMethod)]
fun a_lower_case_method_aborts() {
    let (mut scenario, clock) = publish();
    submit(&mut scenario, &clock, b"get", b"/api/v1/pods", b"");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EInvalidMethod)]
fun an_unsupported_method_aborts() {
    let (mut scenario, clock) = publish();
    submit(&mut scenario, &clock, b"HEAD", b"/api/v1/pods", b"");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EInvalidPath)]
fun a_relative_path_aborts() {
    let (mut scenario, clock) = publish();
    submit(&mut scenario, &clock, b"GET", b"api/v1/pods", b"");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EInvalidPath)]
fun an_empty_path_aborts() {
    let (mut scenario, clock) = publish();
    submit(&mut scenario, &clock, b"GET", b"", b"");
    finish(scenario, clock);
}

#[test]
fun a_payload_of_64_kib_is_accepted() {
    let (mut scenario, clock) = publish();
    let payload = ascii(65_536);
    assert!(payload.length() == 65_536);
    submit(&mut scenario, &clock, b"PUT", b"/api/v1/namespaces/default/configmaps/big", payload);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EPayloadTooLarge)]
fun a_payload_over_64_kib_aborts() {
    let (mut scenario, clock) = publish();
    submit(
        &mut scenario,
        &clock,
        b"PUT",
        b"/api/v1/namespaces/default/configmaps/big",
        ascii(65_537),
    );
    finish(scenario, clock);
}

// === Enclaves ===

#[test]
fun the_enclave_address_is_the_sui_address_of_its_ed25519_key() {
    assert!(gateway::ed25519_address(&PK) == PK_ADDRESS);
}

#[test]
fun an_enclave_with_the_configured_pcrs_registers() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));

    scenario.next_tx(OTHER);
    let config = scenario.take_shared<EnclaveConfig>();
    assert!(config.version() == 1);
    let id = gateway::register_for_testing(
        &config,
        pcr(1),
        pcr(2),
        pcr(3),
        PK,
        START_MS - 5,
        scenario.ctx(),
    );
    assert!(
        event::events_by_type<EnclaveRegistered>() == vector[gateway::registered_event(id, PK)],
    );
    ts::return_shared(config);

    scenario.next_tx(OTHER);
    let enclave = scenario.take_shared_by_id<Enclave>(id);
    assert!(*enclave.pk() == PK);
    assert!(enclave.enclave_address() == PK_ADDRESS);
    assert!(enclave.config_version() == 1);
    assert!(enclave.attested_at() == START_MS - 5);
    ts::return_shared(enclave);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EPcrsNotSet)]
fun no_enclave_registers_before_the_pcrs_are_set() {
    let (mut scenario, clock) = publish();
    // Even one that attests the (empty) initial values.
    register(&mut scenario, vector[], vector[], vector[], PK);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EPcrMismatch)]
fun an_enclave_with_another_pcr1_does_not_register() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    register(&mut scenario, pcr(1), pcr(9), pcr(3), PK);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EInvalidPublicKey)]
fun a_key_that_is_not_32_bytes_is_refused() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let mut pk = PK;
    pk.push_back(0);
    register(&mut scenario, pcr(1), pcr(2), pcr(3), pk);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EInvalidPcrLength)]
fun pcrs_must_be_48_bytes() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), DIGEST);
    finish(scenario, clock);
}

// === Results ===

#[test]
fun the_enclave_records_a_result_once() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let enclave_id = register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);

    // Sent from the enclave's address, i.e. signed with its key.
    scenario.next_tx(PK_ADDRESS);
    let mut registry = scenario.take_shared<EnclaveRegistry>();
    let config = scenario.take_shared<EnclaveConfig>();
    let enclave = scenario.take_shared_by_id<Enclave>(enclave_id);
    assert!(!registry.is_recorded(DIGEST, 3));
    gateway::record_result(
        &mut registry,
        &config,
        &enclave,
        DIGEST,
        3,
        201,
        b"created".to_string(),
        scenario.ctx(),
    );
    assert!(
        event::events_by_type<RequestResult>() == vector[
            gateway::result_event(DIGEST, 3, 201, b"created".to_string()),
        ],
    );
    assert!(registry.is_recorded(DIGEST, 3));
    // Another event of the same transaction is another request.
    assert!(!registry.is_recorded(DIGEST, 4));
    ts::return_shared(enclave);
    ts::return_shared(config);
    ts::return_shared(registry);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::ENotEnclave)]
fun only_the_enclave_key_holder_records_results() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let enclave_id = register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);
    record(&mut scenario, OTHER, enclave_id, DIGEST, b"ok");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EAlreadyRecorded)]
fun a_second_result_for_a_request_aborts() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let enclave_id = register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);
    record(&mut scenario, PK_ADDRESS, enclave_id, DIGEST, b"ok");
    record(&mut scenario, PK_ADDRESS, enclave_id, DIGEST, b"ok again");
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EStaleEnclave)]
fun new_pcrs_retire_the_enclaves_registered_before() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let enclave_id = register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);
    // The same image again: still a new version.
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    record(&mut scenario, PK_ADDRESS, enclave_id, DIGEST, b"ok");
    finish(scenario, clock);
}

#[test]
fun an_enclave_registered_under_the_new_pcrs_records_results() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);
    set_pcrs(&mut scenario, pcr(4), pcr(5), pcr(6));
    let enclave_id = register(&mut scenario, pcr(4), pcr(5), pcr(6), PK);
    record(&mut scenario, PK_ADDRESS, enclave_id, DIGEST, b"ok");
    let registry = scenario.take_shared<EnclaveRegistry>();
    assert!(registry.is_recorded(DIGEST, 0));
    ts::return_shared(registry);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EInvalidTxDigest)]
fun a_result_needs_a_32_byte_digest() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let enclave_id = register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);
    record(&mut scenario, PK_ADDRESS, enclave_id, x"1111", b"ok");
    finish(scenario, clock);
}

#[test]
fun a_message_of_16_kib_is_accepted() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let enclave_id = register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);
    record(&mut scenario, PK_ADDRESS, enclave_id, DIGEST, ascii(16_384));
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = gateway::EMessageTooLong)]
fun a_message_over_16_kib_aborts() {
    let (mut scenario, clock) = publish();
    set_pcrs(&mut scenario, pcr(1), pcr(2), pcr(3));
    let enclave_id = register(&mut scenario, pcr(1), pcr(2), pcr(3), PK);
    record(&mut scenario, PK_ADDRESS, enclave_id, DIGEST, ascii(16_385));
    finish(scenario, clock);
}
