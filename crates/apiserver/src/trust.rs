//! The seed's trust endpoints: `GET /health`, `GET /api/v1/attestation?nonce=<hex>` and
//! `GET /api/v1/security-context`. Every field is true of the running server: a simulated TEE
//! says so in each answer, and components are listed only if they run.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use daas_tee::{Attester, NONCE_BYTES, TeeError};
use serde::Deserialize;
use serde_json::json;

/// What the trust endpoints report on.
#[derive(Debug)]
pub struct TrustState {
    pub attester: Arc<Attester>,
    /// Components that run in this process, e.g. `store`, `etcd-api`, `https-api`.
    pub components: Vec<String>,
    /// The store's key provider, e.g. `tee-sealing:simulation` or `key-file`.
    pub key_provider: String,
    pub store_sealed: bool,
}

fn unix_now() -> u64 {
    crate::k8s::meta::now_unix()
}

/// An error answer: `{"error": "...", "status": CODE}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into(), "status": status.as_u16() }))).into_response()
}

pub async fn health(State(s): State<Arc<TrustState>>) -> Response {
    let p = s.attester.provider();
    let m = hex::encode(p.measurement());
    Json(json!({
        "status": "healthy",
        "enclave": p.is_hardware(),
        "simulated": !p.is_hardware(),
        "components": s.components,
        "tee_type": p.tee_type(),
        "security_level": p.security_level().0,
        "measurement": format!("{}...", &m[..m.len().min(16)]),
        "timestamp": unix_now(),
        "warnings": p.warnings(),
    }))
    .into_response()
}

pub async fn security_context(State(s): State<Arc<TrustState>>) -> Response {
    let p = s.attester.provider();
    Json(json!({
        "tee_type": p.tee_type(),
        "security_level": p.security_level().0,
        "security_level_name": p.security_level().name(),
        "hardware": p.is_hardware(),
        "measurement": hex::encode(p.measurement()),
        "enclave_public_key": hex::encode(s.attester.identity().public_key()),
        "tls_ca_sha256": hex::encode(s.attester.tls_ca_sha256()),
        "store": { "sealed": s.store_sealed, "key_provider": s.key_provider },
        "attestation_endpoint": "/api/v1/attestation?nonce=<16 to 64 bytes, hex>",
        "timestamp": unix_now(),
        "warnings": p.warnings(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct AttestationQuery {
    nonce: Option<String>,
}

pub async fn attestation(State(s): State<Arc<TrustState>>, Query(q): Query<AttestationQuery>) -> Response {
    let Some(nonce) = q.nonce else {
        return error(StatusCode::BAD_REQUEST, "a nonce is required: GET /api/v1/attestation?nonce=<16 to 64 random bytes, hex>");
    };
    let nonce = match hex::decode(nonce.trim()) {
        Ok(n) if NONCE_BYTES.contains(&n.len()) => n,
        Ok(n) => return error(StatusCode::BAD_REQUEST, format!("the nonce must be 16 to 64 bytes, got {}", n.len())),
        Err(_) => return error(StatusCode::BAD_REQUEST, "the nonce must be hex"),
    };
    let attester = s.attester.clone();
    // Hardware evidence is an ioctl or a configfs round trip: keep it off the async threads.
    match tokio::task::spawn_blocking(move || attester.report(&nonce)).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e @ TeeError::Unsupported(_))) => error(StatusCode::NOT_IMPLEMENTED, e.to_string()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "attestation failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("the TEE could not produce evidence: {e}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("attestation task failed: {e}")),
    }
}
