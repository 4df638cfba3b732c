//! Maintenance (Status, Hash, HashKV, Alarm) and Cluster.MemberList for a single-member store.

use daas_store::KvBackend;
use tonic::{Request, Response, Status};

use crate::kv::Face;
use crate::status::to_status;
use crate::{API_VERSION, pb};

#[tonic::async_trait]
impl<B: KvBackend> pb::maintenance_server::Maintenance for Face<B> {
    async fn alarm(&self, req: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        match AlarmAction::try_from(req.into_inner().action) {
            // No alarm is ever raised: space is bounded by the disk, and corruption is reported per
            // read as DATA_LOSS rather than by a cluster-wide alarm.
            Ok(AlarmAction::Get) | Ok(AlarmAction::Deactivate) => Ok(Response::new(pb::AlarmResponse { header: None, alarms: vec![] })),
            _ => Err(Status::invalid_argument("daas: alarms cannot be raised by clients")),
        }
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.backend.status().await.map_err(to_status)?;
        let rev = s.revision.max(0) as u64;
        Ok(Response::new(pb::StatusResponse {
            header: self.header(s.revision),
            version: API_VERSION.into(),
            db_size: s.db_size,
            leader: self.member_id,
            raft_index: rev,
            raft_term: 1,
            raft_applied_index: rev,
            errors: vec![],
            db_size_in_use: s.db_size_in_use,
            is_learner: false,
        }))
    }

    async fn hash(&self, _req: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        let h = self.backend.hash_kv(0).await.map_err(to_status)?;
        Ok(Response::new(pb::HashResponse { header: self.header(h.hash_revision), hash: h.hash }))
    }

    async fn hash_kv(&self, req: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        let h = self.backend.hash_kv(req.into_inner().revision).await.map_err(to_status)?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.header(self.backend.current_revision()),
            hash: h.hash,
            compact_revision: h.compact_revision,
        }))
    }
}

#[tonic::async_trait]
impl<B: KvBackend> pb::cluster_server::Cluster for Face<B> {
    async fn member_list(&self, _req: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        let url = self.config.client_url();
        Ok(Response::new(pb::MemberListResponse {
            header: Some(pb::ResponseHeader { cluster_id: self.cluster_id, member_id: self.member_id, revision: 0, raft_term: 1 }),
            members: vec![pb::Member {
                id: self.member_id,
                name: self.config.member_name.clone(),
                peer_ur_ls: vec![],
                client_ur_ls: vec![url],
                is_learner: false,
            }],
        }))
    }
}
