//! The master's HTTPS API: the Kubernetes API ([`k8s`]) over the sealed store and the seed's
//! trust endpoints (health, attestation, security context), on one TLS listener rooted in the
//! enclave's CA ([`pki`]). Start with [`router`] and [`serve`].
#![forbid(unsafe_code)]

pub mod chain;
pub mod k8s;
pub mod pki;
pub mod seal;
pub mod trust;
pub mod tunnel;

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

/// The routes, without transport (tests may drive it directly): the trust endpoints, and
/// everything else to the Kubernetes API.
pub fn router(trust: Arc<TrustState>, api: Arc<k8s::Api>) -> Router {
    Router::new()
        .route("/health", get(trust::health))
        .route("/api/v1/attestation", get(trust::attestation))
        .route(
            "/api/v1/security-context",
            get(trust::security_context).route_layer(axum::middleware::from_fn_with_state(api.clone(), authenticated)),
        )
        .with_state::<Arc<k8s::Api>>(trust)
        .fallback(k8s::handler)
        .with_state(api)
}

/// Lets a request through only with credentials the API accepts (anonymous: 401 Status).
async fn authenticated(
    axum::extract::State(api): axum::extract::State<Arc<k8s::Api>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match api.authn.authenticate_headers(req.extensions().get::<k8s::auth::PeerCerts>(), req.headers()) {
        Ok(Some(_)) => next.run(req).await,
        Ok(None) => k8s::status::ApiError::unauthorized().into_response(),
        Err(e) => e.into_response(),
    }
}

/// Binds `listen` and serves `router` over TLS with `tls` until `shutdown` resolves. Returns
/// the bound address and the serving future.
pub async fn serve(
    listen: SocketAddr,
    tls: rustls::ServerConfig,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    serve_on(TcpListener::bind(listen).await?, tls, router, shutdown)
}

/// As [`serve`], on a listener the caller bound.
pub fn serve_on(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    serve_any(listener, Some(TlsAcceptor::from(Arc::new(tls))), router, shutdown)
}

/// DANGER: serves `router` over plaintext HTTP (HTTP/1.1 and h2c). Requests carry no client
/// certificate, so only bearer tokens authenticate. The caller restricts it to loopback.
pub fn serve_plaintext_on(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    serve_any(listener, None, router, shutdown)
}

fn serve_any(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    let addr = listener.local_addr()?;
    let serving = async move {
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting an API connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let Some(acceptor) = acceptor else {
                    let service = TowerToHyperService::new(router);
                    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await {
                        tracing::debug!(%peer, error = %e, "plaintext connection ended with an error");
                    }
                    return;
                };
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
                // The verified client chain (if any) rides on every request of the connection.
                let peer_certs = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| k8s::auth::PeerCerts(Arc::new(c.iter().map(|d| d.clone().into_owned()).collect())));
                let service = TowerToHyperService::new(router.layer(axum::middleware::from_fn(
                    move |mut req: axum::extract::Request, next: axum::middleware::Next| {
                        if let Some(p) = &peer_certs {
                            req.extensions_mut().insert(p.clone());
                        }
                        next.run(req)
                    },
                )));
                if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                }
            });
        }
    };
    Ok((addr, serving))
}
