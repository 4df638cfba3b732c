//! The one table that turns store errors into the gRPC statuses etcd sends, with etcd's
//! messages, so clients recognise them (etcd: `api/v3rpc/rpctypes/error.go`).

use daas_store::StoreError;
use tonic::{Code, Status};

/// Maps a store error to the status etcd would send for it.
pub fn to_status(e: StoreError) -> Status {
    let (code, msg) = match &e {
        StoreError::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided".to_string()),
        StoreError::RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large".into()),
        StoreError::TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request".into()),
        StoreError::DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request".into()),
        StoreError::FutureRevision => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into()),
        StoreError::Compacted { .. } => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()),
        StoreError::LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found".into()),
        StoreError::LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists".into()),
        StoreError::LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL".into()),
        StoreError::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found".into()),
        StoreError::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided".into()),
        StoreError::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided".into()),
        StoreError::Integrity { .. } => (Code::DataLoss, format!("daas: {e}")),
        StoreError::Storage(_) | StoreError::Sealing(_) => (Code::Internal, format!("daas: {e}")),
        StoreError::Closed => (Code::Unavailable, "etcdserver: server stopped".into()),
    };
    Status::new(code, msg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_etcd() {
        let s = to_status(StoreError::Compacted { compact_revision: 3 });
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        let s = to_status(StoreError::Integrity { key: "a".into(), revision: 2, detail: "x".into() });
        assert_eq!(s.code(), Code::DataLoss);
        assert!(s.message().contains("integrity"));
    }
}
