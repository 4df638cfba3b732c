//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines. Starts from a
//! resourceVersion (or from a synthetic list of what exists), filters by label and field
//! selectors (an object leaving the selection is a DELETED event), sends bookmarks when asked,
//! and ends with an ERROR Status 410 when the requested history was compacted. Each watch
//! has its own bounded buffer: a client that cannot keep up is disconnected (it relists)
//! instead of slowing the store or other watchers.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use daas_store::{EventKind, KeyValue, RangeRequest, WatchRequest};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::registry::ResourceType;
use super::request::{Output, Query, RequestInfo, flag};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult};
use super::{Api, meta, table};

struct Filter {
    rt: &'static ResourceType,
    labels: LabelSelector,
    fields: FieldSelector,
    /// Only this object (a watch on a named resource, or `metadata.name=` selectors).
    name: Option<String>,
}

impl Filter {
    fn matches(&self, v: &Value) -> bool {
        self.name.as_deref().is_none_or(|n| meta::name(v) == n) && self.labels.matches(meta::labels(v)) && self.fields.matches(self.rt, v)
    }
}

struct Encoder {
    rt: &'static ResourceType,
    output: Output,
    include: String,
    sent_columns: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, obj: &Value) -> Bytes {
        let object = if self.output == Output::Table && kind != "ERROR" && kind != "BOOKMARK" {
            let rv = meta::meta_str(obj, "resourceVersion").unwrap_or("").to_string();
            let t = table::table(self.rt, std::slice::from_ref(obj), &rv, None, &self.include, !self.sent_columns);
            self.sent_columns = true;
            t
        } else if self.output == Output::Table && kind == "BOOKMARK" {
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null), "columnDefinitions": [], "rows": []})
        } else {
            obj.clone()
        };
        let mut out = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

fn decode(rt: &ResourceType, kv: &KeyValue, rev: i64) -> Option<Value> {
    let mut v = rt.from_storage(serde_json::from_slice(&kv.value).ok()?);
    meta::set_resource_version(&mut v, rev);
    Some(v)
}

pub async fn watch(api: Arc<Api>, info: RequestInfo, q: Query, output: Output) -> ApiResult<Response> {
    let rt = info.rt;
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""), rt)?;
    let rv: i64 = match q.get("resourceVersion").filter(|s| !s.is_empty()) {
        Some(s) => s.parse().map_err(|_| ApiError::bad_request(format!("resourceVersion: Invalid value: \"{s}\": must be an integer")))?,
        None => 0,
    };
    let timeout = q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).filter(|t| *t > 0).unwrap_or(1800);
    let bookmarks = flag(&q, "allowWatchBookmarks");
    let initial_events = q.get("sendInitialEvents").map(|s| s == "true");
    let filter = Filter { rt, labels, fields, name: info.name.clone() };
    let mut enc =
        Encoder { rt, output, include: q.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into()), sent_columns: false };
    let prefix = rt.prefix(info.namespace.as_deref());
    let (tx, rx) = mpsc::channel::<Bytes>(api.config.watch_buffer.max(1));
    let bookmark_every = api.config.bookmark_interval;

    // Where to start: rv 0 (or sendInitialEvents) lists what exists first.
    let list_first = rv == 0 || initial_events == Some(true);
    let mut initial: Vec<Bytes> = Vec::new();
    let start_rev = if list_first {
        let mut req = RangeRequest::new(super::prefix_span(&prefix));
        req.revision = if rv > 0 { rv.min(api.store.current_revision()) } else { 0 };
        let r = api.store.range_now(&req)?;
        for kv in &r.kvs {
            if let Some(v) = decode(rt, kv, kv.mod_revision)
                && filter.matches(&v)
            {
                initial.push(enc.line("ADDED", &v));
            }
        }
        let at = if req.revision > 0 { req.revision } else { r.revision };
        if initial_events == Some(true) {
            initial.push(enc.line(
                "BOOKMARK",
                &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": at.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}),
            ));
        }
        at
    } else {
        rv
    };
    let watcher = api.store.watch_now(WatchRequest {
        span: super::prefix_span(&prefix),
        start_revision: start_rev + 1,
        prev_kv: true,
        no_put: false,
        no_delete: false,
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(daas_store::StoreError::Compacted { compact_revision }) => {
            // kube-apiserver answers 200 and sends the 410 as the first event.
            let e = ApiError::gone(format!("too old resource version: {rv} ({compact_revision})"));
            let line = enc.line("ERROR", &e.status());
            return Ok(stream_response(vec![line], None));
        }
        Err(e) => return Err(e.into()),
    };

    let kind = rt.kind;
    let api_version = rt.api_version();
    let open = api.metrics.watch_opened();
    tokio::spawn(async move {
        let _open = open;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
        let mut last_sent = start_rev;
        loop {
            let step = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tx.closed() => break,
                r = tokio::time::timeout(bookmark_every, watcher.step()) => r,
            };
            let events = match step {
                Err(_) => {
                    if bookmarks {
                        let rev = watcher.synced_revision().max(last_sent);
                        let b = enc.line(
                            "BOOKMARK",
                            &json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rev.to_string()}}),
                        );
                        if tx.try_send(b).is_err() {
                            break;
                        }
                    }
                    continue;
                }
                Ok(Err(daas_store::StoreError::Compacted { compact_revision })) => {
                    let e = ApiError::gone(format!("too old resource version: {last_sent} ({compact_revision})"));
                    let _ = tx.try_send(enc.line("ERROR", &e.status()));
                    break;
                }
                Ok(Err(_)) => break,
                Ok(Ok(ev)) => ev,
            };
            let mut overflow = false;
            for ev in events {
                let rev = ev.kv.mod_revision;
                let prev = ev.prev_kv.as_ref().and_then(|p| decode(rt, p, rev));
                let line = match ev.kind {
                    EventKind::Put => {
                        let Some(new) = decode(rt, &ev.kv, rev) else { continue };
                        let now_in = filter.matches(&new);
                        let was_in = prev.as_ref().is_some_and(|p| filter.matches(p));
                        match (was_in, now_in) {
                            (true, true) => enc.line("MODIFIED", &new),
                            (false, true) => enc.line("ADDED", &new),
                            (true, false) => enc.line("DELETED", &new),
                            (false, false) => continue,
                        }
                    }
                    EventKind::Delete => match prev {
                        Some(p) if filter.matches(&p) => enc.line("DELETED", &p),
                        _ => continue,
                    },
                };
                last_sent = rev;
                if tx.try_send(line).is_err() {
                    overflow = true;
                    break;
                }
            }
            if overflow {
                tracing::debug!(resource = kind, "watcher fell behind its buffer; ending the watch so the client relists");
                break;
            }
        }
    });
    Ok(stream_response(initial, Some(rx)))
}

fn stream_response(first: Vec<Bytes>, rx: Option<mpsc::Receiver<Bytes>>) -> Response {
    use futures_util::StreamExt as _;
    let head = futures_util::stream::iter(first);
    let body = match rx {
        Some(rx) => Body::from_stream(head.chain(tokio_stream::wrappers::ReceiverStream::new(rx)).map(Ok::<_, std::convert::Infallible>)),
        None => Body::from_stream(head.map(Ok::<_, std::convert::Infallible>)),
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}
