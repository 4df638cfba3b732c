//! The Lease service: grant, revoke, keep-alive stream, time-to-live, list.

use std::pin::Pin;

use daas_store::{KvBackend, StoreError};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use crate::kv::Face;
use crate::pb;
use crate::status::to_status;

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<B: KvBackend> pb::lease_server::Lease for Face<B> {
    async fn lease_grant(&self, req: Request<pb::LeaseGrantRequest>) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = req.into_inner();
        let g = self.backend.lease_grant(req.id, req.ttl).await.map_err(to_status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: self.header(self.backend.current_revision()),
            id: g.id,
            ttl: g.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(&self, req: Request<pb::LeaseRevokeRequest>) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let rev = self.backend.lease_revoke(req.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse { header: self.header(rev) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let face = self.clone();
        let mut input = req.into_inner();
        let out = async_stream(move |tx| async move {
            while let Some(msg) = input.next().await {
                let Ok(msg) = msg else { break };
                // An unknown lease answers TTL 0 rather than failing the stream, as etcd does.
                let ttl = match face.backend.lease_keep_alive(msg.id).await {
                    Ok(ttl) => ttl,
                    Err(StoreError::LeaseNotFound) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(to_status(e))).await;
                        break;
                    }
                };
                let resp = pb::LeaseKeepAliveResponse { header: face.header(face.backend.current_revision()), id: msg.id, ttl };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(out))
    }

    async fn lease_time_to_live(&self, req: Request<pb::LeaseTimeToLiveRequest>) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = req.into_inner();
        let t = self.backend.lease_time_to_live(req.id, req.keys).await.map_err(to_status)?;
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: self.header(self.backend.current_revision()),
            id: t.id,
            ttl: t.ttl,
            granted_ttl: t.granted_ttl,
            keys: t.keys,
        }))
    }

    async fn lease_leases(&self, _req: Request<pb::LeaseLeasesRequest>) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let ids = self.backend.lease_list().await.map_err(to_status)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.header(self.backend.current_revision()),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}

/// Runs `body` as a task feeding a response stream through a small channel.
pub(crate) fn async_stream<T, F, Fut>(body: F) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
