//! Prometheus metrics of the Kubernetes API, in the text exposition format, under the names
//! kube-apiserver uses so existing dashboards and alerts read them: request counts and
//! latencies by verb, resource and code, requests in flight, open watches, and the process's
//! memory, CPU and start time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds (seconds) of the request-duration buckets, as kube-apiserver's.
const BUCKETS: [f64; 16] = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 10.0];

#[derive(Default)]
struct Latency {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The counters; cheap to update from every request.
/// verb, group, version, resource, subresource, scope.
type Series = (&'static str, &'static str, &'static str, &'static str, String, &'static str);

#[derive(Default)]
pub struct Metrics {
    /// Request counts by series and response code.
    requests: Mutex<HashMap<(Series, u16), u64>>,
    /// Latency histograms by series.
    latency: Mutex<HashMap<Series, Latency>>,
    inflight: AtomicI64,
    watchers: Arc<AtomicI64>,
    /// Requests refused with 429.
    dropped: AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Where a request went, for its labels.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: &'a str,
    pub namespaced: bool,
}

/// Counts one open watch until dropped.
#[derive(Debug)]
pub struct WatchGuard(Arc<AtomicI64>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one request in flight until dropped.
#[derive(Debug)]
pub struct InflightGuard<'a>(&'a AtomicI64);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn verb_label(verb: &'static str) -> &'static str {
    // kube-apiserver reports these verbs in upper case, as it always has.
    match verb {
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" => "DELETE",
        "deletecollection" => "DELETE",
        other => other,
    }
}

impl Metrics {
    pub fn record(&self, l: Labels<'_>, code: u16, took: Duration) {
        let scope = match (l.verb, l.namespaced) {
            ("list" | "deletecollection", true) => "namespace",
            (_, true) => "resource",
            _ => "cluster",
        };
        let verb = verb_label(l.verb);
        let series: Series = (verb, l.group, l.version, l.resource, l.subresource.to_string(), scope);
        if l.verb != "watch" {
            let secs = took.as_secs_f64();
            let mut lat = self.latency.lock();
            let h = lat.entry(series.clone()).or_default();
            h.count += 1;
            h.sum += secs;
            if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
                h.counts[i] += 1;
            }
        }
        // A watch's duration is its lifetime, not a latency: counted only.
        *self.requests.lock().entry((series, code)).or_default() += 1;
    }

    pub fn inflight(&self) -> InflightGuard<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(&self.inflight)
    }

    pub fn watch_opened(&self) -> WatchGuard {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        WatchGuard(self.watchers.clone())
    }

    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition (`text/plain; version=0.0.4`).
    pub fn render(&self, store_revision: i64) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, version, resource, scope, component, and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        let mut reqs: Vec<_> = self.requests.lock().iter().map(|(k, v)| (k.clone(), *v)).collect();
        reqs.sort();
        for (((verb, group, version, resource, sub, scope), code), n) in reqs {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",component=\"apiserver\",group=\"{group}\",resource=\"{resource}\",scope=\"{scope}\",subresource=\"{}\",verb=\"{verb}\",version=\"{version}\"}} {n}",
                escape(&sub)
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component.\n# TYPE apiserver_request_duration_seconds histogram\n");
        let lat = self.latency.lock();
        let mut keys: Vec<_> = lat.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let (verb, group, version, resource, sub, scope) = &key;
            let h = &lat[&key];
            let labels = format!(
                "component=\"apiserver\",group=\"{group}\",resource=\"{resource}\",scope=\"{scope}\",subresource=\"{}\",verb=\"{verb}\",version=\"{version}\"",
                escape(sub)
            );
            let mut cumulative = 0;
            for (b, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}");
            }
            let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "apiserver_request_duration_seconds_count{{{labels}}} {}", h.count);
        }
        drop(lat);
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        };
        gauge(
            &mut out,
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            "gauge",
            self.inflight.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests (watches).",
            "gauge",
            self.watchers.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "apiserver_dropped_requests_total",
            "Number of requests dropped with 'Try again later' response.",
            "counter",
            self.dropped.load(Ordering::Relaxed).to_string(),
        );
        gauge(&mut out, "daas_store_revision", "Current revision of the sealed store.", "gauge", store_revision.to_string());
        if let Some(p) = process() {
            gauge(&mut out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", p.rss_bytes.to_string());
            gauge(
                &mut out,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                format!("{:.2}", p.cpu_seconds),
            );
            gauge(
                &mut out,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                "gauge",
                format!("{:.2}", p.start_time),
            );
            gauge(&mut out, "process_open_fds", "Number of open file descriptors.", "gauge", p.open_fds.to_string());
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Process {
    rss_bytes: u64,
    cpu_seconds: f64,
    start_time: f64,
    open_fds: usize,
}

/// This process's figures from /proc (Linux); `None` elsewhere.
fn process() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Clock ticks are 100 per second on every Linux this runs on (USER_HZ).
    let ticks = 100.0;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let start_ticks: f64 = f.get(19)?.parse().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    let btime: f64 =
        std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))?;
    Some(Process {
        rss_bytes: rss_pages * 4096,
        cpu_seconds: (utime + stime) / ticks,
        start_time: btime + start_ticks / ticks,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_and_bucketed_by_their_labels() {
        let m = Metrics::default();
        let l = Labels { verb: "get", group: "", version: "v1", resource: "pods", subresource: "", namespaced: true };
        m.record(l, 200, Duration::from_millis(3));
        m.record(l, 200, Duration::from_millis(30));
        m.record(Labels { verb: "create", ..l }, 409, Duration::from_millis(1));
        let text = m.render(7);
        assert!(text.contains("apiserver_request_total{code=\"200\",component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 2"), "{text}");
        assert!(text.contains("verb=\"POST\",version=\"v1\"} 1"), "{text}");
        assert!(text.contains("verb=\"GET\",version=\"v1\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("verb=\"GET\",version=\"v1\",le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("daas_store_revision 7"));
        assert!(text.contains("process_resident_memory_bytes "));
    }

    #[test]
    fn guards_count_what_is_open() {
        let m = Metrics::default();
        let w = m.watch_opened();
        let i = m.inflight();
        assert!(m.render(0).contains("apiserver_longrunning_requests 1"));
        assert!(m.render(0).contains("apiserver_current_inflight_requests 1"));
        drop((w, i));
        assert!(m.render(0).contains("apiserver_longrunning_requests 0"));
        assert!(m.render(0).contains("apiserver_current_inflight_requests 0"));
    }
}
