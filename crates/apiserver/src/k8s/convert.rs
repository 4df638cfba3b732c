//! Conversion between a resource's served version and the form it is stored in, for the one
//! type served in two API groups: events. core/v1 and events.k8s.io/v1 events share one
//! storage (`/registry/events/`), kept in the core/v1 form as kube-apiserver keeps them, so
//! an event a controller records through events.k8s.io shows in `kubectl describe` and
//! `kubectl get events`, and the other way round.

use serde_json::{Map, Value, json};

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Fields with the same name in both versions.
const EVENT_SHARED: &[&str] = &["metadata", "eventTime", "series", "reason", "type", "action", "related", "reportingInstance"];

/// An events.k8s.io/v1 Event as core/v1 stores it.
pub fn event_v1_to_core(v: &Value) -> Value {
    let Some(src) = v.as_object() else { return v.clone() };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    for f in EVENT_SHARED {
        if let Some(x) = src.get(*f) {
            out.insert((*f).into(), x.clone());
        }
    }
    for (v1, core) in EVENT_FIELDS {
        if let Some(x) = src.get(*v1) {
            out.insert((*core).into(), x.clone());
        }
    }
    // core/v1 EventSeries has no `state`; both carry count and lastObservedTime.
    if let Some(Value::Object(s)) = out.get_mut("series") {
        s.retain(|k, _| k == "count" || k == "lastObservedTime");
    }
    Value::Object(out)
}

/// A stored (core/v1) Event as events.k8s.io/v1 serves it.
pub fn event_core_to_v1(v: &Value) -> Value {
    let Some(src) = v.as_object() else { return v.clone() };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    for f in EVENT_SHARED {
        if let Some(x) = src.get(*f) {
            out.insert((*f).into(), x.clone());
        }
    }
    for (v1, core) in EVENT_FIELDS {
        if let Some(x) = src.get(*core) {
            out.insert((*v1).into(), x.clone());
        }
    }
    // events.k8s.io/v1 requires eventTime; events made through core/v1 often lack it, and
    // kube-apiserver fills it from the first timestamp.
    if out.get("eventTime").is_none_or(Value::is_null)
        && let Some(Value::String(first)) = src.get("firstTimestamp")
    {
        out.insert("eventTime".into(), json!(first.trim_end_matches('Z').to_string() + ".000000Z"));
    }
    Value::Object(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_both_ways() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "eventTime": "2026-11-21T07:00:00.000000Z",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
            "note": "0/3 nodes are available", "reason": "FailedScheduling", "type": "Warning",
            "action": "Scheduling", "reportingController": "default-scheduler", "reportingInstance": "daas-1",
            "series": {"count": 2, "lastObservedTime": "2026-11-21T07:01:00.000000Z"},
        });
        let core = event_v1_to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "0/3 nodes are available");
        assert_eq!(core["reportingComponent"], "default-scheduler");
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
        assert_eq!(event_core_to_v1(&core), v1);
    }

    #[test]
    fn a_core_event_without_event_time_gets_one_from_its_first_timestamp() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x"},
            "involvedObject": {"kind": "Node", "name": "n1"}, "message": "Starting", "count": 3,
            "firstTimestamp": "2026-11-21T07:00:00Z", "source": {"component": "kubelet"}});
        let v1 = event_core_to_v1(&core);
        assert_eq!(v1["eventTime"], "2026-11-21T07:00:00.000000Z");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(v1["note"], "Starting");
    }
}
