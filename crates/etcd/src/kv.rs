//! The KV service (Range, Put, DeleteRange, Txn, Compact) and the state every service shares.

use std::sync::Arc;

use daas_store::{KvBackend, StoreError};
use tonic::{Request, Response, Status};

use crate::status::to_status;
use crate::{EtcdConfig, convert, pb};

/// Bytes etcd's raft envelope (request header with its id, and the field tag and length of the
/// wrapped request) adds before it compares a request with `--max-request-bytes`.
const RAFT_ENVELOPE_BYTES: usize = 18;

/// The etcd face over one backend; cloned into each service.
#[derive(Clone)]
pub(crate) struct Face<B> {
    pub backend: B,
    pub config: Arc<EtcdConfig>,
    pub cluster_id: u64,
    pub member_id: u64,
}

impl<B: KvBackend> Face<B> {
    pub fn new(backend: B, config: EtcdConfig, cluster_id: u64, member_id: u64) -> Self {
        Face { backend, config: Arc::new(config), cluster_id, member_id }
    }

    /// The response header etcd sends: ids, the given revision, and term 1 (one member, no
    /// elections).
    pub fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader { cluster_id: self.cluster_id, member_id: self.member_id, revision, raft_term: 1 })
    }

    /// Rejects a request larger than `--max-request-bytes`, as etcd does before applying it.
    /// etcd measures the request wrapped in its raft envelope; we add that envelope's size so
    /// the boundary falls on the same byte. Over the gRPC limit, the answer is grpc-go's.
    pub fn check_size(&self, m: &impl prost::Message) -> Result<(), Status> {
        let len = self.check_grpc_size(m)?;
        if len + RAFT_ENVELOPE_BYTES > self.config.max_request_bytes {
            return Err(to_status(StoreError::RequestTooLarge));
        }
        Ok(())
    }

    /// Refuses a message over the gRPC limit (`max_request_bytes` + 512 KiB) with the status and
    /// wording grpc-go gives for etcd; returns the message's encoded length otherwise.
    pub fn check_grpc_size(&self, m: &impl prost::Message) -> Result<usize, Status> {
        let (len, limit) = (m.encoded_len(), self.config.max_request_bytes + crate::GRPC_OVERHEAD_BYTES);
        if len > limit {
            return Err(Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {limit})")));
        }
        Ok(len)
    }
}

#[tonic::async_trait]
impl<B: KvBackend> pb::kv_server::Kv for Face<B> {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let req = req.into_inner();
        self.check_grpc_size(&req)?;
        let r = self.backend.range(convert::range_request(req)).await.map_err(to_status)?;
        let h = self.header(r.revision);
        Ok(Response::new(convert::range_response(r, h)))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let req = req.into_inner();
        self.check_size(&req)?;
        let r = self.backend.put(convert::put_request(req)).await.map_err(to_status)?;
        let h = self.header(r.revision);
        Ok(Response::new(convert::put_response(r, h)))
    }

    async fn delete_range(&self, req: Request<pb::DeleteRangeRequest>) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        self.check_grpc_size(&req)?;
        let r = self.backend.delete_range(convert::delete_request(req)).await.map_err(to_status)?;
        let h = self.header(r.revision);
        Ok(Response::new(convert::delete_response(r, h)))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let req = req.into_inner();
        self.check_size(&req)?;
        let r = self.backend.txn(convert::txn_request(req)).await.map_err(to_status)?;
        let h = self.header(r.revision);
        Ok(Response::new(convert::txn_response(r, h)))
    }

    async fn compact(&self, req: Request<pb::CompactionRequest>) -> Result<Response<pb::CompactionResponse>, Status> {
        // Compaction is always physical here: superseded records are removed in the same commit.
        let rev = self.backend.compact(req.into_inner().revision).await.map_err(to_status)?;
        Ok(Response::new(pb::CompactionResponse { header: self.header(rev) }))
    }
}
