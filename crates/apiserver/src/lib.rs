//! The master's HTTPS API. For now it serves the seed's trust endpoints (health, attestation,
//! security context) over TLS rooted in the enclave's CA ([`pki`]); the Kubernetes API joins it
//! on the same listener. Start with [`serve`].
#![forbid(unsafe_code)]

pub mod pki;
pub mod trust;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use pki::{Pki, PkiError};
pub use trust::TrustState;

/// The routes, without transport (tests may drive it directly).
pub fn router(trust: Arc<TrustState>) -> Router {
    Router::new()
        .route("/health", get(trust::health))
        .route("/api/v1/attestation", get(trust::attestation))
        .route("/api/v1/security-context", get(trust::security_context))
        .fallback(|| async { trust::error(axum::http::StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(trust)
}

/// Binds `listen` and serves `router` over TLS with `tls` until `shutdown` resolves. Returns
/// the bound address and the serving future.
pub async fn serve(
    listen: SocketAddr,
    tls: rustls::ServerConfig,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let serving = async move {
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting an HTTPS connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                }
            });
        }
    };
    Ok((addr, serving))
}
