//! The controllers' kube client, wired straight to the API server in this process: requests
//! go through `Api::handle` — authorization, admission, audit and metrics included — without a
//! socket or TLS. The caller's identity rides as a request extension that nothing arriving
//! over the network can carry.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use daas_apiserver::k8s::auth::User;
use daas_apiserver::k8s::{Api, InternalUser};

#[derive(Clone)]
pub struct InProcess {
    api: Arc<Api>,
    user: User,
}

impl tower::Service<http::Request<kube::client::Body>> for InProcess {
    type Response = http::Response<axum::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(InternalUser(self.user.clone()));
        let req = http::Request::from_parts(parts, axum::body::Body::new(body));
        let api = self.api.clone();
        Box::pin(async move { Ok(api.handle(req).await) })
    }
}

/// A kube client that acts as `name` (in `system:masters`, as kube-controller-manager's
/// credentials are bound to its roles) inside this process.
pub fn client(api: Arc<Api>, name: &str) -> kube::Client {
    let user = User {
        name: name.to_string(),
        uid: String::new(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        method: "internal",
        token: None,
    };
    kube::Client::new(InProcess { api, user }, "default")
}
