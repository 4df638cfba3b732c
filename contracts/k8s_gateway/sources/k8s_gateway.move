/// The Kubernetes API gateway on Sui, and the registry of the enclaves that answer it.
///
/// A client submits a Kubernetes API request as a transaction: `submit_request` checks its
/// shape and emits `K8sAPIRequest`, with the sender and the chain's time. Anyone may submit;
/// whether the sender may do what it asks is decided by the master (inside its TEE) when it
/// processes the event, from the sender's stake. The master then reports the outcome with
/// `record_result`, which only an attested enclave can do.
///
/// Enclaves are admitted as Nautilus admits them: the admin sets the expected PCR0/1/2 of
/// the master's enclave image in the shared `EnclaveConfig`; anyone may then register an
/// enclave by passing an AWS Nitro attestation document, verified by the Sui framework
/// (`sui::nitro_attestation`), whose PCRs match. The document's `public_key` field carries
/// the enclave's Ed25519 key (32 raw bytes, generated inside the enclave at boot), and the
/// registered `Enclave` remembers it with the Sui address it controls. Results must be sent
/// from that address, that is, signed with that key.
///
/// Layout contract: the Rust side (`daas_chain::events::K8sApiRequest`) decodes
/// `K8sAPIRequest` field by field, and a test (crates/chain/tests/move_package.rs) holds the
/// declaration to its layout. Change a field here only together with the decoder.
module k8s_gateway::k8s_gateway;

use k8s_gateway::staking::AdminCap;
use std::string::String;
use sui::address;
use sui::clock::Clock;
use sui::event;
use sui::hash;
use sui::nitro_attestation::{NitroAttestationDocument, PCREntry};
use sui::table::{Self, Table};

// === Bounds ===

/// Largest request payload: 64 KiB.
const MAX_PAYLOAD_BYTES: u64 = 65_536;
/// Longest result message: 16 KiB.
const MAX_MESSAGE_BYTES: u64 = 16_384;
/// An Ed25519 public key.
const ED25519_PK_BYTES: u64 = 32;
/// The signature-scheme flag Sui hashes in front of an Ed25519 key to derive its address.
const ED25519_FLAG: u8 = 0;
/// A Nitro PCR: a SHA-384 digest.
const PCR_BYTES: u64 = 48;
/// A Sui transaction digest.
const TX_DIGEST_BYTES: u64 = 32;

// === Abort codes ===

/// The method is not one of GET, POST, PUT, PATCH, DELETE.
const EInvalidMethod: u64 = 0;
/// The path does not start with "/".
const EInvalidPath: u64 = 1;
/// The payload is larger than `MAX_PAYLOAD_BYTES`.
const EPayloadTooLarge: u64 = 2;
/// A PCR given to `update_pcrs` is not 48 bytes long.
const EInvalidPcrLength: u64 = 3;
/// The admin has not set the expected PCRs yet.
const EPcrsNotSet: u64 = 4;
/// The attestation document lacks PCR0, PCR1 or PCR2.
const EPcrMissing: u64 = 5;
/// The attested PCRs differ from the configured ones.
const EPcrMismatch: u64 = 6;
/// The attestation document carries no public key.
const ENoPublicKey: u64 = 7;
/// The attested public key is not a 32-byte Ed25519 key.
const EInvalidPublicKey: u64 = 8;
/// `record_result` not sent from the enclave's address.
const ENotEnclave: u64 = 9;
/// The enclave was registered under PCRs the admin has since replaced.
const EStaleEnclave: u64 = 10;
/// `tx_digest` is not 32 bytes long.
const EInvalidTxDigest: u64 = 11;
/// The message is longer than `MAX_MESSAGE_BYTES`.
const EMessageTooLong: u64 = 12;
/// A result for this request was already recorded.
const EAlreadyRecorded: u64 = 13;

// === Objects ===

/// The expected PCR0, PCR1 and PCR2 of the master's enclave image (48 bytes each).
public struct Pcrs has copy, drop, store {
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
}

/// What an enclave must attest to be registered. Created once, in `init`, with no PCRs (so
/// no enclave can register until the admin sets them), and shared. `version` counts PCR
/// updates; enclaves registered under an older version can no longer record results.
public struct EnclaveConfig has key {
    id: UID,
    name: String,
    pcrs: Pcrs,
    version: u64,
}

/// A registered enclave: its Ed25519 public key, the Sui address that key controls, the
/// config version it was attested under, and the attestation document's time (ms).
public struct Enclave has key {
    id: UID,
    pk: vector<u8>,
    addr: address,
    config_version: u64,
    attested_at: u64,
}

/// The requests that have a recorded result, each with the enclave that recorded it, so
/// that a request gets at most one result however often the master retries. Created once,
/// in `init`, and shared.
public struct EnclaveRegistry has key {
    id: UID,
    results: Table<RequestKey, ID>,
}

/// A request's identity: the digest of the transaction that emitted its `K8sAPIRequest`
/// and the event's index in that transaction.
public struct RequestKey has copy, drop, store {
    tx_digest: vector<u8>,
    event_index: u64,
}

// === Events ===

/// A Kubernetes API request. `payload` is the request body (JSON or YAML bytes, possibly
/// empty); `timestamp` is the chain's time in milliseconds.
public struct K8sAPIRequest has copy, drop {
    method: String,
    path: String,
    namespace: String,
    resource_type: String,
    payload: vector<u8>,
    sender: address,
    timestamp: u64,
}

/// The outcome of the request emitted as event `event_index` of transaction `tx_digest`:
/// `code` is the HTTP status the master answered with, `message` its explanation.
public struct RequestResult has copy, drop {
    tx_digest: vector<u8>,
    event_index: u64,
    code: u64,
    message: String,
}

/// An enclave was registered.
public struct EnclaveRegistered has copy, drop {
    enclave_id: ID,
    pk: vector<u8>,
}

// === Publishing ===

fun init(ctx: &mut TxContext) {
    transfer::share_object(EnclaveConfig {
        id: object::new(ctx),
        name: b"k3s-daas master".to_string(),
        pcrs: Pcrs { pcr0: vector[], pcr1: vector[], pcr2: vector[] },
        version: 0,
    });
    transfer::share_object(EnclaveRegistry { id: object::new(ctx), results: table::new(ctx) });
}

// === Requests ===

/// Submits a Kubernetes API request: emits `K8sAPIRequest` with the sender and the chain's
/// time. `method` must be GET, POST, PUT, PATCH or DELETE (upper case), `path` must start
/// with "/", and `payload` may be at most 64 KiB.
public fun submit_request(
    method: String,
    path: String,
    namespace: String,
    resource_type: String,
    payload: vector<u8>,
    clock: &Clock,
    ctx: &TxContext,
) {
    assert!(is_allowed_method(&method), EInvalidMethod);
    let p = path.as_bytes();
    assert!(!p.is_empty() && p[0] == 0x2f, EInvalidPath);
    assert!(payload.length() <= MAX_PAYLOAD_BYTES, EPayloadTooLarge);

    event::emit(K8sAPIRequest {
        method,
        path,
        namespace,
        resource_type,
        payload,
        sender: ctx.sender(),
        timestamp: clock.timestamp_ms(),
    });
}

/// Records the outcome of a request, once. Only the enclave's own address may call it, and
/// only while the enclave's PCRs are the configured ones. Emits `RequestResult`.
public fun record_result(
    registry: &mut EnclaveRegistry,
    config: &EnclaveConfig,
    enclave: &Enclave,
    tx_digest: vector<u8>,
    event_index: u64,
    code: u64,
    message: String,
    ctx: &TxContext,
) {
    assert!(ctx.sender() == enclave.addr, ENotEnclave);
    assert!(enclave.config_version == config.version, EStaleEnclave);
    assert!(tx_digest.length() == TX_DIGEST_BYTES, EInvalidTxDigest);
    assert!(message.length() <= MAX_MESSAGE_BYTES, EMessageTooLong);

    let key = RequestKey { tx_digest, event_index };
    assert!(!registry.results.contains(key), EAlreadyRecorded);
    registry.results.add(key, object::id(enclave));
    event::emit(RequestResult { tx_digest, event_index, code, message });
}

// === Enclaves ===

/// Registers the enclave that produced `document`. The transaction obtains the document
/// from `0x2::nitro_attestation::load_nitro_attestation(attestation_bytes, clock)` in an
/// earlier command: that framework function is an `entry` function, which Move code cannot
/// call, and it is what checks the document's signature and certificate chain against the
/// AWS Nitro root. Here PCR0, PCR1 and PCR2 must equal the configured ones and the document
/// must carry a 32-byte Ed25519 public key. Creates and shares an `Enclave`, emits
/// `EnclaveRegistered`, and returns the enclave's id.
public fun register_enclave(
    config: &EnclaveConfig,
    document: NitroAttestationDocument,
    ctx: &mut TxContext,
): ID {
    let entries = document.pcrs();
    let attested = Pcrs {
        pcr0: pcr_value(entries, 0),
        pcr1: pcr_value(entries, 1),
        pcr2: pcr_value(entries, 2),
    };
    let pk = document.public_key();
    assert!(pk.is_some(), ENoPublicKey);
    register(config, attested, *pk.borrow(), *document.timestamp(), ctx)
}

/// Sets the PCRs enclaves must attest (48 bytes each, as `nitro-cli build-enclave` prints
/// them) and bumps the config's version, which retires every enclave registered before.
public fun update_pcrs(
    _: &AdminCap,
    config: &mut EnclaveConfig,
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
) {
    assert!(
        pcr0.length() == PCR_BYTES && pcr1.length() == PCR_BYTES && pcr2.length() == PCR_BYTES,
        EInvalidPcrLength,
    );
    config.pcrs = Pcrs { pcr0, pcr1, pcr2 };
    config.version = config.version + 1;
}

/// Renames the config (a label for people; nothing checks it).
public fun update_name(_: &AdminCap, config: &mut EnclaveConfig, name: String) {
    config.name = name;
}

/// The Sui address of an Ed25519 public key: BLAKE2b-256 of the flag byte 0x00 followed by
/// the key.
public fun ed25519_address(pk: &vector<u8>): address {
    let mut bytes = vector[ED25519_FLAG];
    bytes.append(*pk);
    address::from_bytes(hash::blake2b256(&bytes))
}

// === Reading ===

public fun pk(enclave: &Enclave): &vector<u8> { &enclave.pk }

public fun enclave_address(enclave: &Enclave): address { enclave.addr }

public fun config_version(enclave: &Enclave): u64 { enclave.config_version }

public fun attested_at(enclave: &Enclave): u64 { enclave.attested_at }

public fun name(config: &EnclaveConfig): &String { &config.name }

public fun version(config: &EnclaveConfig): u64 { config.version }

/// The configured PCR0, PCR1 and PCR2.
public fun pcrs(config: &EnclaveConfig): (vector<u8>, vector<u8>, vector<u8>) {
    (config.pcrs.pcr0, config.pcrs.pcr1, config.pcrs.pcr2)
}

/// Whether a result for this request has been recorded.
public fun is_recorded(registry: &EnclaveRegistry, tx_digest: vector<u8>, event_index: u64): bool {
    registry.results.contains(RequestKey { tx_digest, event_index })
}

// === Internals ===

fun is_allowed_method(method: &String): bool {
    let m = *method.as_bytes();
    m == b"GET" || m == b"POST" || m == b"PUT" || m == b"PATCH" || m == b"DELETE"
}

/// The value of PCR `index` in an attestation document's PCR list. The list is searched by
/// index rather than by position, so its order does not matter.
fun pcr_value(entries: &vector<PCREntry>, index: u8): vector<u8> {
    let mut i = 0;
    while (i < entries.length()) {
        let entry = &entries[i];
        if (entry.index() == index) return *entry.value();
        i = i + 1;
    };
    abort EPcrMissing
}

/// The checks and effects of `register_enclave` after the attestation document has been
/// taken apart (separate so that tests, which cannot make a signed document, reach them).
fun register(
    config: &EnclaveConfig,
    attested: Pcrs,
    pk: vector<u8>,
    attested_at: u64,
    ctx: &mut TxContext,
): ID {
    assert!(!config.pcrs.pcr0.is_empty(), EPcrsNotSet);
    assert!(attested == config.pcrs, EPcrMismatch);
    assert!(pk.length() == ED25519_PK_BYTES, EInvalidPublicKey);

    let addr = ed25519_address(&pk);
    let enclave = Enclave {
        id: object::new(ctx),
        pk,
        addr,
        config_version: config.version,
        attested_at,
    };
    let enclave_id = object::id(&enclave);
    event::emit(EnclaveRegistered { enclave_id, pk });
    transfer::share_object(enclave);
    enclave_id
}

// === Tests' access ===

#[test_only]
public fun init_for_testing(ctx: &mut TxContext) { init(ctx) }

/// `register_enclave` for a document that attested these PCRs and this key.
#[test_only]
public fun register_for_testing(
    config: &EnclaveConfig,
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
    pk: vector<u8>,
    attested_at: u64,
    ctx: &mut TxContext,
): ID {
    register(config, Pcrs { pcr0, pcr1, pcr2 }, pk, attested_at, ctx)
}

#[test_only]
public fun request_event(
    method: String,
    path: String,
    namespace: String,
    resource_type: String,
    payload: vector<u8>,
    sender: address,
    timestamp: u64,
): K8sAPIRequest {
    K8sAPIRequest { method, path, namespace, resource_type, payload, sender, timestamp }
}

#[test_only]
public fun result_event(
    tx_digest: vector<u8>,
    event_index: u64,
    code: u64,
    message: String,
): RequestResult {
    RequestResult { tx_digest, event_index, code, message }
}

#[test_only]
public fun registered_event(enclave_id: ID, pk: vector<u8>): EnclaveRegistered {
    EnclaveRegistered { enclave_id, pk }
}
