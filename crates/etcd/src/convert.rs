//! Conversions between etcd's wire messages and the store's types. Only this crate knows
//! protobuf.

use daas_store as st;

use crate::pb::{self, mvccpb};

pub fn kv(k: st::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: k.key,
        create_revision: k.create_revision,
        mod_revision: k.mod_revision,
        version: k.version,
        value: k.value,
        lease: k.lease,
    }
}

pub fn event(e: st::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            st::EventKind::Put => mvccpb::event::EventType::Put as i32,
            st::EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv(e.kv)),
        prev_kv: e.prev_kv.map(kv),
    }
}

pub fn range_request(r: pb::RangeRequest) -> st::RangeRequest {
    use pb::range_request::{SortOrder as O, SortTarget as T};
    st::RangeRequest {
        span: st::KeySpan::new(r.key, r.range_end),
        limit: r.limit,
        revision: r.revision,
        sort_order: match O::try_from(r.sort_order).unwrap_or(O::None) {
            O::None => st::SortOrder::None,
            O::Ascend => st::SortOrder::Ascend,
            O::Descend => st::SortOrder::Descend,
        },
        sort_target: match T::try_from(r.sort_target).unwrap_or(T::Key) {
            T::Key => st::SortTarget::Key,
            T::Version => st::SortTarget::Version,
            T::Create => st::SortTarget::Create,
            T::Mod => st::SortTarget::Mod,
            T::Value => st::SortTarget::Value,
        },
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn put_request(r: pb::PutRequest) -> st::PutRequest {
    st::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_request(r: pb::DeleteRangeRequest) -> st::DeleteRangeRequest {
    st::DeleteRangeRequest { span: st::KeySpan::new(r.key, r.range_end), prev_kv: r.prev_kv }
}

fn compare(c: pb::Compare) -> st::Compare {
    use pb::compare::{CompareResult as R, TargetUnion as U};
    let target = match c.target_union {
        Some(U::Version(v)) => st::CompareTarget::Version(v),
        Some(U::CreateRevision(v)) => st::CompareTarget::Create(v),
        Some(U::ModRevision(v)) => st::CompareTarget::Mod(v),
        Some(U::Value(v)) => st::CompareTarget::Value(v),
        Some(U::Lease(v)) => st::CompareTarget::Lease(v),
        // No union set: compare against the zero value of the named target, as etcd does.
        None => match pb::compare::CompareTarget::try_from(c.target).unwrap_or(pb::compare::CompareTarget::Version) {
            pb::compare::CompareTarget::Version => st::CompareTarget::Version(0),
            pb::compare::CompareTarget::Create => st::CompareTarget::Create(0),
            pb::compare::CompareTarget::Mod => st::CompareTarget::Mod(0),
            pb::compare::CompareTarget::Value => st::CompareTarget::Value(Default::default()),
            pb::compare::CompareTarget::Lease => st::CompareTarget::Lease(0),
        },
    };
    st::Compare {
        span: st::KeySpan::new(c.key, c.range_end),
        result: match R::try_from(c.result).unwrap_or(R::Equal) {
            R::Equal => st::CompareResult::Equal,
            R::Greater => st::CompareResult::Greater,
            R::Less => st::CompareResult::Less,
            R::NotEqual => st::CompareResult::NotEqual,
        },
        target,
    }
}

fn request_op(op: pb::RequestOp) -> Option<st::RequestOp> {
    use pb::request_op::Request as R;
    Some(match op.request? {
        R::RequestRange(r) => st::RequestOp::Range(range_request(r)),
        R::RequestPut(r) => st::RequestOp::Put(put_request(r)),
        R::RequestDeleteRange(r) => st::RequestOp::DeleteRange(delete_request(r)),
        R::RequestTxn(t) => st::RequestOp::Txn(txn_request(t)),
    })
}

pub fn txn_request(t: pb::TxnRequest) -> st::TxnRequest {
    st::TxnRequest {
        compare: t.compare.into_iter().map(compare).collect(),
        success: t.success.into_iter().filter_map(request_op).collect(),
        failure: t.failure.into_iter().filter_map(request_op).collect(),
    }
}

/// A header carrying only the revision, as etcd sets on responses nested in a txn.
fn nested(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { revision, ..Default::default() })
}

pub fn range_response(r: st::RangeResponse, header: Option<pb::ResponseHeader>) -> pb::RangeResponse {
    pb::RangeResponse { header, kvs: r.kvs.into_iter().map(kv).collect(), more: r.more, count: r.count }
}

pub fn put_response(r: st::PutResponse, header: Option<pb::ResponseHeader>) -> pb::PutResponse {
    pb::PutResponse { header, prev_kv: r.prev_kv.map(kv) }
}

pub fn delete_response(r: st::DeleteRangeResponse, header: Option<pb::ResponseHeader>) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse { header, deleted: r.deleted, prev_kvs: r.prev_kvs.into_iter().map(kv).collect() }
}

pub fn txn_response(t: st::TxnResponse, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    use pb::response_op::Response as R;
    pb::TxnResponse {
        header,
        succeeded: t.succeeded,
        responses: t
            .responses
            .into_iter()
            .map(|r| pb::ResponseOp {
                response: Some(match r {
                    st::ResponseOp::Range(x) => {
                        let h = nested(x.revision);
                        R::ResponseRange(range_response(x, h))
                    }
                    st::ResponseOp::Put(x) => {
                        let h = nested(x.revision);
                        R::ResponsePut(put_response(x, h))
                    }
                    st::ResponseOp::DeleteRange(x) => {
                        let h = nested(x.revision);
                        R::ResponseDeleteRange(delete_response(x, h))
                    }
                    st::ResponseOp::Txn(x) => {
                        let h = nested(x.revision);
                        R::ResponseTxn(txn_response(x, h))
                    }
                }),
            })
            .collect(),
    }
}
