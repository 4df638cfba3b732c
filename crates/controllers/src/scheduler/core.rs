//! The scheduler's decision: which node a pending pod goes to, or why none can take it. A pure
//! function of (pod, nodes) so it is tested without a server; the scheduler loop around it owns
//! watching, binding and keeping each [`NodeState`] in step with the pods bound to it. Start at
//! [`schedule`].
//!
//! Filters and reason texts follow kube-scheduler (NodeUnschedulable, NodeAffinity,
//! TaintToleration, NodeResourcesFit, NodePorts), so `kubectl describe pod` reads the same.
//! Scoring is a small fixed blend: least allocated, spreading per controller, preferred node
//! affinity.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PreferredSchedulingTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

type ResourceList = BTreeMap<String, Quantity>;

/// kube-scheduler's stand-ins, for scoring only, for a container that requests no cpu or
/// memory; without them pods that ask for nothing would all pile onto the first node by name.
const SCORING_DEFAULT_CPU_MILLIS: i64 = 100;
const SCORING_DEFAULT_MEMORY_BYTES: i64 = 200 * 1024 * 1024;
/// The kubelet's default `--max-pods`, for nodes that report no pod capacity.
const DEFAULT_MAX_PODS: i64 = 110;

const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

const REASON_NOT_READY: &str = "node(s) had untolerated taint {node.kubernetes.io/not-ready: }";
const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const REASON_CPU: &str = "Insufficient cpu";
const REASON_MEMORY: &str = "Insufficient memory";
const REASON_EPHEMERAL: &str = "Insufficient ephemeral-storage";
const REASON_PODS: &str = "Too many pods";
const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_SPREAD: i64 = 2;
const WEIGHT_PREFERRED_AFFINITY: i64 = 1;

/// Resource amounts the scheduler counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub ephemeral_bytes: i64,
    pub pods: i64,
}

impl Resources {
    fn plus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            ephemeral_bytes: self.ephemeral_bytes.saturating_add(o.ephemeral_bytes),
            pods: self.pods.saturating_add(o.pods),
        }
    }

    /// Floored at zero, so a remove that was never matched by an add cannot make a node look
    /// roomier than empty.
    fn minus(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(o.cpu_millis).max(0),
            memory_bytes: self.memory_bytes.saturating_sub(o.memory_bytes).max(0),
            ephemeral_bytes: self.ephemeral_bytes.saturating_sub(o.ephemeral_bytes).max(0),
            pods: self.pods.saturating_sub(o.pods).max(0),
        }
    }

    fn max_each(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.max(o.cpu_millis),
            memory_bytes: self.memory_bytes.max(o.memory_bytes),
            ephemeral_bytes: self.ephemeral_bytes.max(o.ephemeral_bytes),
            pods: self.pods.max(o.pods),
        }
    }
}

/// Parses a Kubernetes quantity ("100m", "1", "1.5", "128Mi", "1G", "1e3", "500k"...) to
/// milli-units (for cpu) or units (for bytes).
///
/// Fractions round up, as `Quantity.MilliValue()` does ("0.1m" is 1). Returns `None` for text
/// that is not a quantity and for values that do not fit an `i64`.
pub fn parse_cpu_millis(q: &str) -> Option<i64> {
    parse_scaled(q, 3)
}

/// See [`parse_cpu_millis`]; whole units, rounded up ("1m" of memory is 1 byte).
pub fn parse_bytes(q: &str) -> Option<i64> {
    parse_scaled(q, 0)
}

/// The quantity grammar: `[+-]digits[.digits]` then one suffix: nothing, a decimal SI suffix
/// (`m k M G T P E`), a binary one (`Ki`..`Ei`) or an exponent (`e3`, `E-2`). The result is
/// the value times 10^`scale10`, computed exactly in u128 and rounded up once at the end.
fn parse_scaled(q: &str, scale10: i64) -> Option<i64> {
    let bytes = q.as_bytes();
    let (negative, mut i) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa: u128 = 0;
    let mut digits = 0usize;
    let mut fraction_digits = 0i64;
    let mut seen_dot = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
                digits += 1;
                if seen_dot {
                    fraction_digits += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    // `i` stops at an ASCII byte or the end, so it is a char boundary.
    let (pow2, pow10): (u32, i64) = match &q[i..] {
        "" => (0, 0),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        suffix => {
            let exponent = suffix.strip_prefix('e').or_else(|| suffix.strip_prefix('E'))?;
            (0, exponent.parse::<i32>().ok()?.into())
        }
    };
    if mantissa == 0 {
        return Some(0);
    }
    let numerator = mantissa.checked_mul(1u128 << pow2)?;
    let exponent = pow10 + scale10 - fraction_digits;
    let magnitude = if exponent >= 0 {
        numerator.checked_mul(10u128.checked_pow(u32::try_from(exponent).ok()?)?)?
    } else {
        match u32::try_from(-exponent).ok().and_then(|e| 10u128.checked_pow(e)) {
            Some(divisor) => numerator.div_ceil(divisor),
            // The divisor exceeds u128, so it exceeds the numerator: a nonzero sliver, rounded up.
            None => 1,
        }
    };
    let magnitude = i64::try_from(magnitude).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// What a pod asks for: the sum over containers of requests (a limit stands in for a missing
/// request, as Kubernetes defaults it), max'ed with each init container's, plus spec.overhead;
/// pods = 1.
///
/// Sidecars (init containers with `restartPolicy: Always`) keep running, so, as in
/// kube-scheduler, they add to the steady state and to every later init container's peak.
pub fn pod_requests(pod: &Pod) -> Resources {
    pod_amounts(pod).exact
}

/// A pod's requests twice over: as counted for fit, and with the scoring stand-ins.
#[derive(Clone, Copy, Default)]
struct Amounts {
    exact: Resources,
    scoring: Resources,
}

impl Amounts {
    fn plus(self, o: Amounts) -> Amounts {
        Amounts { exact: self.exact.plus(o.exact), scoring: self.scoring.plus(o.scoring) }
    }

    fn max_each(self, o: Amounts) -> Amounts {
        Amounts { exact: self.exact.max_each(o.exact), scoring: self.scoring.max_each(o.scoring) }
    }
}

/// Both kinds of amount in one pass, so each quantity is parsed once per call.
fn pod_amounts(pod: &Pod) -> Amounts {
    let one_pod = Resources { pods: 1, ..Resources::default() };
    let Some(spec) = pod.spec.as_ref() else {
        return Amounts { exact: one_pod, scoring: one_pod };
    };
    let mut steady = spec.containers.iter().fold(Amounts::default(), |sum, c| sum.plus(container_amounts(c)));
    let mut sidecars = Amounts::default();
    let mut init_peak = Amounts::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_amounts(c);
        let while_running = if is_sidecar(c) {
            sidecars = sidecars.plus(own);
            steady = steady.plus(own);
            sidecars
        } else {
            sidecars.plus(own)
        };
        init_peak = init_peak.max_each(while_running);
    }
    let overhead = read_list(spec.overhead.as_ref(), None);
    let mut total = steady.max_each(init_peak).plus(Amounts { exact: overhead, scoring: overhead });
    total.exact.pods = 1;
    total.scoring.pods = 1;
    total
}

fn container_amounts(c: &Container) -> Amounts {
    let (requests, limits) = c.resources.as_ref().map_or((None, None), |r| (r.requests.as_ref(), r.limits.as_ref()));
    let cpu = lookup(requests, limits, "cpu", parse_cpu_millis);
    let memory = lookup(requests, limits, "memory", parse_bytes);
    let exact = Resources {
        cpu_millis: cpu.unwrap_or(0),
        memory_bytes: memory.unwrap_or(0),
        ephemeral_bytes: lookup(requests, limits, "ephemeral-storage", parse_bytes).unwrap_or(0),
        pods: 0,
    };
    // An explicit "0" stays zero, as in kube-scheduler; only a missing request gets the stand-in.
    let scoring = Resources {
        cpu_millis: cpu.unwrap_or(SCORING_DEFAULT_CPU_MILLIS),
        memory_bytes: memory.unwrap_or(SCORING_DEFAULT_MEMORY_BYTES),
        ..exact
    };
    Amounts { exact, scoring }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// cpu, memory and ephemeral-storage from `primary`, each falling back to `fallback`.
fn read_list(primary: Option<&ResourceList>, fallback: Option<&ResourceList>) -> Resources {
    Resources {
        cpu_millis: lookup(primary, fallback, "cpu", parse_cpu_millis).unwrap_or(0),
        memory_bytes: lookup(primary, fallback, "memory", parse_bytes).unwrap_or(0),
        ephemeral_bytes: lookup(primary, fallback, "ephemeral-storage", parse_bytes).unwrap_or(0),
        pods: 0,
    }
}

/// `None` when neither list names the resource. The apiserver validates quantities, so an
/// unreadable or negative one only comes from a bypassed store; it counts as zero.
fn lookup(primary: Option<&ResourceList>, fallback: Option<&ResourceList>, name: &str, parse: fn(&str) -> Option<i64>) -> Option<i64> {
    let q = primary.and_then(|m| m.get(name)).or_else(|| fallback.and_then(|m| m.get(name)))?;
    Some(parse(q.0.as_str()).map_or(0, |v| v.max(0)))
}

/// One node as the scheduler sees it: the node and what the pods bound to it use.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub node: Arc<Node>,
    /// From status.allocatable, each resource falling back to capacity; pods defaults to 110.
    pub allocatable: Resources,
    /// Sum of [`pod_requests`] of bound, non-terminated pods.
    pub requested: Resources,
    /// (protocol, hostIP or "0.0.0.0", port) claimed by bound pods.
    pub host_ports: HashSet<(String, String, i32)>,
    /// Pods per owner (controller ownerReference uid) on this node, for spreading.
    pub owned: HashMap<String, u32>,
    /// `requested` with the scoring stand-ins; kept apart so fit stays exact.
    scoring_requested: Resources,
}

impl NodeState {
    pub fn new(node: Arc<Node>) -> NodeState {
        let status = node.status.as_ref();
        let allocatable = status.and_then(|s| s.allocatable.as_ref());
        let capacity = status.and_then(|s| s.capacity.as_ref());
        let allocatable = Resources {
            pods: lookup(allocatable, capacity, "pods", parse_bytes).unwrap_or(DEFAULT_MAX_PODS),
            ..read_list(allocatable, capacity)
        };
        NodeState {
            node,
            allocatable,
            requested: Resources::default(),
            host_ports: HashSet::new(),
            owned: HashMap::new(),
            scoring_requested: Resources::default(),
        }
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    /// Accounts a pod bound here (idempotence is the caller's job).
    ///
    /// The caller also decides what counts as bound and live (terminated pods are left out) and
    /// must hand `remove_pod` the same pod it added.
    pub fn add_pod(&mut self, pod: &Pod) {
        let amounts = pod_amounts(pod);
        self.requested = self.requested.plus(amounts.exact);
        self.scoring_requested = self.scoring_requested.plus(amounts.scoring);
        for (protocol, ip, port) in claimed_ports(pod) {
            self.host_ports.insert((protocol.to_owned(), ip.to_owned(), port));
        }
        if let Some(uid) = controller_uid(pod) {
            *self.owned.entry(uid.to_owned()).or_insert(0) += 1;
        }
    }

    /// Undoes [`NodeState::add_pod`]. `host_ports` is a set, so if two bound pods claimed the
    /// same port (possible only when something bypassed this scheduler) removing one frees it.
    pub fn remove_pod(&mut self, pod: &Pod) {
        let amounts = pod_amounts(pod);
        self.requested = self.requested.minus(amounts.exact);
        self.scoring_requested = self.scoring_requested.minus(amounts.scoring);
        for (protocol, ip, port) in claimed_ports(pod) {
            self.host_ports.remove(&(protocol.to_owned(), ip.to_owned(), port));
        }
        if let Some(uid) = controller_uid(pod)
            && let Some(count) = self.owned.get_mut(uid)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.owned.remove(uid);
            }
        }
    }
}

/// The host ports a pod claims, as (protocol, hostIP, port) with kube's defaults filled in:
/// TCP, 0.0.0.0, and for host-network pods the container port. Sidecars count; other init
/// containers have exited before the pod runs.
fn claimed_ports(pod: &Pod) -> impl Iterator<Item = (&str, &str, i32)> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let sidecars = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or(&[]).iter().filter(|c| is_sidecar(c));
    containers.iter().chain(sidecars).flat_map(|c| c.ports.as_deref().unwrap_or(&[])).filter_map(move |p| {
        let port = match p.host_port {
            Some(port) if port > 0 => port,
            _ if host_network && p.container_port > 0 => p.container_port,
            _ => return None,
        };
        let protocol = p.protocol.as_deref().filter(|s| !s.is_empty()).unwrap_or("TCP");
        let ip = p.host_ip.as_deref().filter(|s| !s.is_empty()).unwrap_or("0.0.0.0");
        Some((protocol, ip, port))
    })
}

fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata.owner_references.as_deref()?.iter().find(|r| r.controller == Some(true)).map(|r| r.uid.as_str())
}

/// Why no node fits, summarised as kube-scheduler words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
    pub reasons: BTreeMap<String, usize>,
}

impl std::fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Unschedulable {}

/// Picks the node for `pod`: filters, then scores; returns the index into `nodes`.
///
/// Score = least allocated ×1 + spread ×2 + preferred affinity ×1, each 0..=100 in integers as
/// kube-scheduler does; ties go to the lowest node name so the choice never depends on order.
pub fn schedule(pod: &Pod, nodes: &[NodeState]) -> Result<usize, Unschedulable> {
    if nodes.is_empty() {
        return Err(Unschedulable { message: "no nodes available to schedule pods".to_owned(), reasons: BTreeMap::new() });
    }
    let want = Wanted::of(pod);
    let mut feasible = Vec::with_capacity(nodes.len());
    let mut failures = Vec::new();
    for (index, state) in nodes.iter().enumerate() {
        match want.check(state) {
            Ok(()) => feasible.push(Candidate {
                index,
                least_allocated: least_allocated(&state.allocatable, &state.scoring_requested.plus(want.amounts.scoring)),
                owned: want.owner.and_then(|uid| state.owned.get(uid)).copied().unwrap_or(0),
                preference: want.preference(&state.node),
            }),
            // Reasons only matter if every node fails.
            Err(failure) if feasible.is_empty() => failures.push(failure),
            Err(_) => {}
        }
    }
    if feasible.is_empty() {
        return Err(unschedulable(nodes.len(), &failures));
    }

    let max_owned = feasible.iter().map(|c| c.owned).max().unwrap_or(0);
    let max_preference = feasible.iter().map(|c| c.preference).max().unwrap_or(0);
    let mut best: Option<(i64, &str, usize)> = None;
    for c in &feasible {
        let spread = if max_owned == 0 { 100 } else { 100 * i64::from(max_owned - c.owned) / i64::from(max_owned) };
        let preference = if max_preference == 0 { 0 } else { 100 * c.preference / max_preference };
        let score = WEIGHT_LEAST_ALLOCATED * c.least_allocated + WEIGHT_SPREAD * spread + WEIGHT_PREFERRED_AFFINITY * preference;
        let name = nodes[c.index].name();
        let better = match best {
            None => true,
            Some((best_score, best_name, _)) => score > best_score || (score == best_score && name < best_name),
        };
        if better {
            best = Some((score, name, c.index));
        }
    }
    // `feasible` is not empty, so the loop set `best`.
    Ok(best.map_or(feasible[0].index, |(_, _, index)| index))
}

/// A feasible node's raw scores, normalised once all are known.
struct Candidate {
    index: usize,
    least_allocated: i64,
    owned: u32,
    preference: i64,
}

/// Why a node was filtered out; turned into text only when the pod fits nowhere.
enum Failure<'a> {
    NotReady,
    Unschedulable,
    Affinity,
    Taint(&'a Taint),
    Resources { cpu: bool, memory: bool, ephemeral: bool, pods: bool },
    Ports,
}

/// The pod, read once per [`schedule`] call rather than once per node.
struct Wanted<'a> {
    amounts: Amounts,
    tolerations: &'a [Toleration],
    node_selector: Option<&'a BTreeMap<String, String>>,
    required_terms: Option<&'a [NodeSelectorTerm]>,
    preferred_terms: &'a [PreferredSchedulingTerm],
    ports: Vec<(&'a str, &'a str, i32)>,
    owner: Option<&'a str>,
}

impl<'a> Wanted<'a> {
    fn of(pod: &'a Pod) -> Wanted<'a> {
        let spec = pod.spec.as_ref();
        let node_affinity = spec.and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref());
        Wanted {
            amounts: pod_amounts(pod),
            tolerations: spec.and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]),
            node_selector: spec.and_then(|s| s.node_selector.as_ref()),
            required_terms: node_affinity
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
                .map(|s| s.node_selector_terms.as_slice()),
            preferred_terms: node_affinity.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]),
            ports: claimed_ports(pod).collect(),
            owner: controller_uid(pod),
        }
    }

    /// The filters in kube-scheduler's order; the first that fails names the node's reason.
    fn check<'n>(&self, state: &'n NodeState) -> Result<(), Failure<'n>> {
        let node = &*state.node;
        // kube-scheduler leaves readiness to the not-ready taint that the kubelet and the node
        // lifecycle controller put on nodes; ours may lack it, so a node that is not Ready is
        // treated as if it carried `node.kubernetes.io/not-ready:NoSchedule`. Only a toleration
        // matching that NoSchedule taint lets a pod through: the not-ready:NoExecute toleration
        // every pod gets by default must not, or no pod would ever avoid a dead node.
        if !is_ready(node) && !self.tolerates(NOT_READY_TAINT, "", "NoSchedule") {
            return Err(Failure::NotReady);
        }
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if unschedulable && !self.tolerates(UNSCHEDULABLE_TAINT, "", "NoSchedule") {
            return Err(Failure::Unschedulable);
        }
        if !self.matches_selector(node) {
            return Err(Failure::Affinity);
        }
        let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
        if let Some(taint) = taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !self.tolerates(&t.key, t.value.as_deref().unwrap_or(""), &t.effect)
        }) {
            return Err(Failure::Taint(taint));
        }
        self.fits(state)?;
        if self.ports.iter().any(|want| port_taken(state, *want)) {
            return Err(Failure::Ports);
        }
        Ok(())
    }

    fn tolerates(&self, key: &str, value: &str, effect: &str) -> bool {
        self.tolerations.iter().any(|t| tolerates(t, key, value, effect))
    }

    fn matches_selector(&self, node: &Node) -> bool {
        if let Some(selector) = self.node_selector
            && !selector.iter().all(|(k, v)| label(node, k) == Some(v.as_str()))
        {
            return false;
        }
        self.required_terms.is_none_or(|terms| terms.iter().any(|t| term_matches(t, node)))
    }

    /// Like NodeResourcesFit, a resource the pod does not ask for is not checked, so a pod
    /// without requests still fits an overcommitted node; every shortfall is reported.
    fn fits<'n>(&self, state: &NodeState) -> Result<(), Failure<'n>> {
        let (asked, has, used) = (&self.amounts.exact, &state.allocatable, &state.requested);
        let short = |asked: i64, has: i64, used: i64| asked > 0 && asked > has.saturating_sub(used);
        let cpu = short(asked.cpu_millis, has.cpu_millis, used.cpu_millis);
        let memory = short(asked.memory_bytes, has.memory_bytes, used.memory_bytes);
        let ephemeral = short(asked.ephemeral_bytes, has.ephemeral_bytes, used.ephemeral_bytes);
        let pods = used.pods.saturating_add(1) > has.pods;
        if cpu || memory || ephemeral || pods { Err(Failure::Resources { cpu, memory, ephemeral, pods }) } else { Ok(()) }
    }

    /// Sum of the weights of the preferred terms the node matches.
    fn preference(&self, node: &Node) -> i64 {
        self.preferred_terms.iter().filter(|p| p.weight > 0 && term_matches(&p.preference, node)).map(|p| i64::from(p.weight)).sum()
    }
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Kubernetes' `Toleration.ToleratesTaint`: an empty effect or key matches any; `Exists`
/// ignores the value; `Equal` (the default) compares it.
fn tolerates(t: &Toleration, key: &str, value: &str, effect: &str) -> bool {
    let t_effect = t.effect.as_deref().unwrap_or("");
    if !t_effect.is_empty() && t_effect != effect {
        return false;
    }
    let t_key = t.key.as_deref().unwrap_or("");
    if !t_key.is_empty() && t_key != key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == value,
        "Exists" => true,
        _ => false,
    }
}

/// Expressions (on labels) and fields are ANDed. A term with neither matches no node, as in
/// Kubernetes, rather than every node.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, label(node, &r.key)))
        && fields.iter().all(|r| requirement_matches(r, field(node, &r.key)))
}

/// `value` is the node's label (or field) named by the requirement's key, if it has one.
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else { return false };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else { return false };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

fn label<'n>(node: &'n Node, key: &str) -> Option<&'n str> {
    node.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The only field node selectors may name.
fn field<'n>(node: &'n Node, key: &str) -> Option<&'n str> {
    if key == "metadata.name" { node.metadata.name.as_deref() } else { None }
}

/// Same protocol and port, and host IPs that overlap: equal, or either is the wildcard. Nodes
/// hold few host ports, so a scan beats allocating owned keys for a set lookup.
fn port_taken(state: &NodeState, (protocol, ip, port): (&str, &str, i32)) -> bool {
    state.host_ports.iter().any(|(p, i, n)| *n == port && p == protocol && (i == "0.0.0.0" || ip == "0.0.0.0" || i == ip))
}

/// LeastAllocated over cpu and memory, 0..=100; a resource the node lacks or is overcommitted
/// on scores zero.
fn least_allocated(allocatable: &Resources, used: &Resources) -> i64 {
    fn free_percent(capacity: i64, used: i64) -> i64 {
        if capacity <= 0 || used > capacity {
            return 0;
        }
        // In i128: a byte capacity times 100 can overflow i64.
        i64::try_from(i128::from(capacity - used) * 100 / i128::from(capacity)).unwrap_or(0)
    }
    (free_percent(allocatable.cpu_millis, used.cpu_millis) + free_percent(allocatable.memory_bytes, used.memory_bytes)) / 2
}

fn unschedulable(total: usize, failures: &[Failure<'_>]) -> Unschedulable {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = |reason: &str| match reasons.get_mut(reason) {
        Some(n) => *n += 1,
        None => {
            reasons.insert(reason.to_owned(), 1);
        }
    };
    for failure in failures {
        match failure {
            Failure::NotReady => count(REASON_NOT_READY),
            Failure::Unschedulable => count(REASON_UNSCHEDULABLE),
            Failure::Affinity => count(REASON_AFFINITY),
            Failure::Taint(t) => {
                let reason = format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or(""));
                count(reason.as_str());
            }
            Failure::Resources { cpu, memory, ephemeral, pods } => {
                for (short, reason) in [(pods, REASON_PODS), (cpu, REASON_CPU), (memory, REASON_MEMORY), (ephemeral, REASON_EPHEMERAL)] {
                    if *short {
                        count(reason);
                    }
                }
            }
            Failure::Ports => count(REASON_PORTS),
        }
    }
    let mut message = format!("0/{total} nodes are available: ");
    for (i, (reason, n)) in reasons.iter().enumerate() {
        if i > 0 {
            message.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(message, "{n} {reason}");
    }
    message.push('.');
    Unschedulable { message, reasons }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn node_value(name: &str, cpu: &str, memory: &str) -> Value {
        json!({
            "metadata": {"name": name},
            "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        })
    }

    fn state(v: Value) -> NodeState {
        NodeState::new(Arc::new(serde_json::from_value(v).unwrap()))
    }

    fn node(name: &str) -> NodeState {
        state(node_value(name, "4", "8Gi"))
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn asking(cpu: &str, memory: &str) -> Pod {
        pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    fn with_spec(spec: Value) -> Pod {
        let mut v = json!({"spec": spec});
        v["spec"]["containers"] = json!([{"name": "c"}]);
        pod(v)
    }

    fn owned_by(uid: &str) -> Value {
        json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}]})
    }

    fn message(pod: &Pod, nodes: &[NodeState]) -> String {
        schedule(pod, nodes).unwrap_err().message
    }

    fn one(reason: &str) -> String {
        format!("0/1 nodes are available: 1 {reason}.")
    }

    #[test]
    fn parses_cpu() {
        for (q, want) in [
            ("100m", 100),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1m", 1),
            ("0.0001", 1),
            (".5", 500),
            ("5.", 5000),
            ("+1", 1000),
            ("-1", -1000),
            ("0", 0),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e+3", 1_000_000),
            ("1e-3", 1),
            ("500k", 500_000_000),
            ("2M", 2_000_000_000),
            ("1Ki", 1_024_000),
            ("0.000000000000000000000000000000000000000000001", 1),
        ] {
            assert_eq!(parse_cpu_millis(q), Some(want), "{q}");
        }
    }

    #[test]
    fn parses_bytes() {
        for (q, want) in [
            ("128Mi", 128 * 1024 * 1024),
            ("1Gi", 1 << 30),
            ("1.5Ki", 1536),
            ("1G", 1_000_000_000),
            ("500k", 500_000),
            ("1e3", 1000),
            ("1E", 1_000_000_000_000_000_000),
            ("8E", 8_000_000_000_000_000_000),
            ("7Ei", 7 << 60),
            ("1m", 1),
            ("1500m", 2),
            ("0.0Mi", 0),
            ("110", 110),
        ] {
            assert_eq!(parse_bytes(q), Some(want), "{q}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for q in [
            "", "m", ".", "-", "+", "1 ", " 1", "1.2.3", "1K", "1ki", "1MI", "1e", "1e1.5", "1e3m", "1Mix", "--1", "abc", "1,5", "0x10",
            "1Eix", "1e+",
        ] {
            assert_eq!(parse_bytes(q), None, "{q:?}");
            assert_eq!(parse_cpu_millis(q), None, "{q:?}");
        }
    }

    #[test]
    fn rejects_what_overflows() {
        assert_eq!(parse_bytes("10E"), None);
        assert_eq!(parse_bytes("8Ei"), None);
        assert_eq!(parse_bytes("1e19"), None);
        assert_eq!(parse_bytes("1e2147483647"), None);
        assert_eq!(parse_cpu_millis("1E"), None);
        assert_eq!(parse_cpu_millis("99999999999999999999999999999999999999999"), None);
        assert_eq!(parse_bytes("0e99"), Some(0));
        assert_eq!(parse_bytes("1e-2147483648"), Some(1));
    }

    #[test]
    fn sums_containers_with_limits_standing_in_for_requests() {
        let p = pod(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m", "ephemeral-storage": "1Gi"}}},
                {"name": "c"},
            ],
        }}));
        let want = Resources { cpu_millis: 300, memory_bytes: 64 << 20, ephemeral_bytes: 1 << 30, pods: 1 };
        assert_eq!(pod_requests(&p), want);
    }

    #[test]
    fn init_containers_are_maxed_and_overhead_added() {
        let p = pod(json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "300m", "memory": "64Mi"}}}],
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "200m", "memory": "16Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        }}));
        assert_eq!(pod_requests(&p), Resources { cpu_millis: 1010, memory_bytes: 64 << 20, ephemeral_bytes: 0, pods: 1 });
    }

    #[test]
    fn sidecars_add_to_the_steady_state_and_later_init_peaks() {
        let p = pod(json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "migrate", "resources": {"requests": {"cpu": "120m"}}},
            ],
        }}));
        // Steady state 100 + 50; while migrate runs 50 + 120.
        assert_eq!(pod_requests(&p).cpu_millis, 170);
        let empty = pod(json!({}));
        assert_eq!(pod_requests(&empty), Resources { pods: 1, ..Resources::default() });
    }

    #[test]
    fn node_state_reads_allocatable_then_capacity() {
        let s = state(json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "3500m"}, "capacity": {"cpu": "4", "memory": "2Gi", "ephemeral-storage": "10G"}},
        }));
        assert_eq!(s.allocatable, Resources { cpu_millis: 3500, memory_bytes: 2 << 30, ephemeral_bytes: 10_000_000_000, pods: 110 });
        assert_eq!(s.name(), "n");
    }

    #[test]
    fn add_and_remove_pod_balance() {
        let mut s = node("n");
        let p = pod(json!({
            "metadata": owned_by("u1"),
            "spec": {"containers": [{
                "name": "c",
                "resources": {"requests": {"cpu": "1"}},
                "ports": [{"containerPort": 80, "hostPort": 8080}],
            }]},
        }));
        s.add_pod(&p);
        assert_eq!(s.requested, Resources { cpu_millis: 1000, memory_bytes: 0, ephemeral_bytes: 0, pods: 1 });
        assert!(s.host_ports.contains(&("TCP".to_owned(), "0.0.0.0".to_owned(), 8080)));
        assert_eq!(s.owned.get("u1"), Some(&1));
        s.remove_pod(&p);
        assert_eq!(s.requested, Resources::default());
        assert_eq!(s.scoring_requested, Resources::default());
        assert!(s.host_ports.is_empty());
        assert!(s.owned.is_empty());
        s.remove_pod(&p);
        assert_eq!(s.requested, Resources::default());
    }

    #[test]
    fn no_nodes() {
        let err = schedule(&asking("1", "1Gi"), &[]).unwrap_err();
        assert_eq!(err.message, "no nodes available to schedule pods");
        assert!(err.reasons.is_empty());
    }

    #[test]
    fn not_ready_nodes_act_tainted() {
        let mut v = node_value("n", "4", "8Gi");
        v["status"]["conditions"] = json!([{"type": "Ready", "status": "Unknown"}]);
        let nodes = [state(v)];
        assert_eq!(message(&asking("1", "1Gi"), &nodes), one("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"));
        let mut v = node_value("n", "4", "8Gi");
        v["status"]["conditions"] = json!([]);
        assert!(schedule(&asking("1", "1Gi"), &[state(v)]).is_err());

        // The default NoExecute toleration every pod carries does not let it onto a dead node.
        let default_only = with_spec(json!({"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]}));
        assert!(schedule(&default_only, &nodes).is_err());
        let tolerant =
            with_spec(json!({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}));
        assert_eq!(schedule(&tolerant, &nodes), Ok(0));
        let everything = with_spec(json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(schedule(&everything, &nodes), Ok(0));
    }

    #[test]
    fn cordoned_nodes_are_unschedulable() {
        let mut v = node_value("n", "4", "8Gi");
        v["spec"]["unschedulable"] = json!(true);
        let nodes = [state(v)];
        assert_eq!(message(&asking("1", "1Gi"), &nodes), one("node(s) were unschedulable"));
        let tolerant =
            with_spec(json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}));
        assert_eq!(schedule(&tolerant, &nodes), Ok(0));
    }

    #[test]
    fn node_selector_needs_every_label() {
        let mut v = node_value("n", "4", "8Gi");
        v["metadata"]["labels"] = json!({"disk": "ssd", "zone": "a"});
        let nodes = [state(v)];
        assert_eq!(schedule(&with_spec(json!({"nodeSelector": {"disk": "ssd"}})), &nodes), Ok(0));
        let p = with_spec(json!({"nodeSelector": {"disk": "ssd", "zone": "b"}}));
        assert_eq!(message(&p, &nodes), one("node(s) didn't match Pod's node affinity/selector"));
    }

    fn required(terms: Value) -> Pod {
        with_spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    #[test]
    fn required_affinity_ors_terms_and_ands_expressions() {
        let mut v = node_value("n1", "4", "8Gi");
        v["metadata"]["labels"] = json!({"zone": "a", "gen": "5"});
        let nodes = [state(v)];
        let fits = |terms: Value| schedule(&required(terms), &nodes).is_ok();
        let zone_a = json!({"key": "zone", "operator": "In", "values": ["a", "b"]});
        let zone_c = json!({"key": "zone", "operator": "In", "values": ["c"]});
        let old_gen = json!({"key": "gen", "operator": "Lt", "values": ["4"]});
        assert!(fits(json!([{"matchExpressions": [zone_a]}])));
        assert!(!fits(json!([{"matchExpressions": [zone_a, old_gen]}])));
        assert!(fits(json!([{"matchExpressions": [zone_c]}, {"matchExpressions": [zone_a]}])));
        assert!(!fits(json!([{"matchExpressions": [zone_c]}])));
        assert!(fits(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])));
        assert!(!fits(json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}])));
        assert!(!fits(
            json!([{"matchExpressions": [zone_a], "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])
        ));
        // An empty term, or no terms at all, selects nothing.
        assert!(!fits(json!([{}])));
        assert!(!fits(json!([])));
        assert_eq!(message(&required(json!([{"matchExpressions": [zone_c]}])), &nodes), one(REASON_AFFINITY));
    }

    #[test]
    fn requirement_operators() {
        let r = |op: &str, values: Value| -> NodeSelectorRequirement {
            serde_json::from_value(json!({"key": "k", "operator": op, "values": values})).unwrap()
        };
        assert!(requirement_matches(&r("In", json!(["a", "b"])), Some("b")));
        assert!(!requirement_matches(&r("In", json!(["a"])), Some("b")));
        assert!(!requirement_matches(&r("In", json!(["a"])), None));
        assert!(requirement_matches(&r("NotIn", json!(["a"])), Some("b")));
        assert!(!requirement_matches(&r("NotIn", json!(["a"])), Some("a")));
        assert!(requirement_matches(&r("NotIn", json!(["a"])), None));
        assert!(requirement_matches(&r("Exists", json!(null)), Some("")));
        assert!(!requirement_matches(&r("Exists", json!(null)), None));
        assert!(requirement_matches(&r("DoesNotExist", json!(null)), None));
        assert!(!requirement_matches(&r("DoesNotExist", json!(null)), Some("x")));
        assert!(requirement_matches(&r("Gt", json!(["3"])), Some("10")));
        assert!(!requirement_matches(&r("Gt", json!(["3"])), Some("3")));
        assert!(requirement_matches(&r("Lt", json!(["3"])), Some("-1")));
        assert!(!requirement_matches(&r("Lt", json!(["3"])), Some("3")));
        assert!(!requirement_matches(&r("Gt", json!(["3"])), Some("ten")));
        assert!(!requirement_matches(&r("Gt", json!(["x"])), Some("10")));
        assert!(!requirement_matches(&r("Gt", json!(["3", "4"])), Some("10")));
        assert!(!requirement_matches(&r("Gt", json!(["3"])), None));
        assert!(!requirement_matches(&r("Near", json!(["a"])), Some("a")));
    }

    #[test]
    fn toleration_semantics() {
        let t = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
        let any = t(json!({"operator": "Exists"}));
        assert!(tolerates(&any, "k", "v", "NoSchedule"));
        assert!(tolerates(&any, "other", "", "NoExecute"));
        let equal = t(json!({"key": "k", "value": "v"}));
        assert!(tolerates(&equal, "k", "v", "NoSchedule"));
        assert!(tolerates(&equal, "k", "v", "NoExecute"));
        assert!(!tolerates(&equal, "k", "w", "NoSchedule"));
        assert!(!tolerates(&equal, "j", "v", "NoSchedule"));
        let explicit = t(json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}));
        assert!(tolerates(&explicit, "k", "v", "NoSchedule"));
        assert!(!tolerates(&explicit, "k", "v", "NoExecute"));
        let no_value = t(json!({"key": "k", "operator": "Equal"}));
        assert!(tolerates(&no_value, "k", "", "NoSchedule"));
        assert!(!tolerates(&no_value, "k", "v", "NoSchedule"));
        let exists = t(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}));
        assert!(tolerates(&exists, "k", "anything", "NoExecute"));
        assert!(!tolerates(&exists, "k", "anything", "NoSchedule"));
        let any_key_for_effect = t(json!({"operator": "Exists", "effect": "NoSchedule"}));
        assert!(tolerates(&any_key_for_effect, "k", "v", "NoSchedule"));
        assert!(!tolerates(&any_key_for_effect, "k", "v", "NoExecute"));
        let unknown = t(json!({"key": "k", "operator": "Gte", "value": "v"}));
        assert!(!tolerates(&unknown, "k", "v", "NoSchedule"));
    }

    #[test]
    fn untolerated_taints_name_the_first() {
        let mut v = node_value("n", "4", "8Gi");
        v["spec"]["taints"] = json!([
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
        ]);
        let nodes = [state(v)];
        assert_eq!(message(&asking("1", "1Gi"), &nodes), one("node(s) had untolerated taint {dedicated: gpu}"));
        let gpu = with_spec(json!({"tolerations": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}));
        assert_eq!(message(&gpu, &nodes), one("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"));
        let both = with_spec(json!({"tolerations": [
            {"key": "dedicated", "operator": "Exists"},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
        ]}));
        assert_eq!(schedule(&both, &nodes), Ok(0));
    }

    #[test]
    fn every_insufficient_resource_counts() {
        let nodes = [state(node_value("n", "1", "1Gi"))];
        let err = schedule(&asking("2", "2Gi"), &nodes).unwrap_err();
        assert_eq!(err.message, "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.");
        assert_eq!(err.reasons, BTreeMap::from([(REASON_CPU.to_owned(), 1), (REASON_MEMORY.to_owned(), 1)]));
        assert_eq!(schedule(&asking("1", "1Gi"), &nodes), Ok(0));

        let mut v = node_value("n", "4", "8Gi");
        v["status"]["allocatable"]["ephemeral-storage"] = json!("1Gi");
        let p = pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "2Gi"}}}]}}));
        assert_eq!(message(&p, &[state(v)]), one("Insufficient ephemeral-storage"));
    }

    #[test]
    fn counts_what_is_already_bound() {
        let mut s = state(node_value("n", "2", "4Gi"));
        s.add_pod(&asking("1500m", "1Gi"));
        let nodes = [s];
        assert_eq!(message(&asking("600m", "1Gi"), &nodes), one("Insufficient cpu"));
        assert_eq!(schedule(&asking("500m", "1Gi"), &nodes), Ok(0));
        // A pod asking nothing is not turned away by an overcommitted node.
        let mut full = state(node_value("n", "1", "1Gi"));
        full.add_pod(&asking("2", "2Gi"));
        assert_eq!(schedule(&with_spec(json!({})), &[full]), Ok(0));
    }

    #[test]
    fn too_many_pods() {
        let mut v = node_value("n", "4", "8Gi");
        v["status"]["allocatable"]["pods"] = json!("1");
        let mut s = state(v);
        assert_eq!(schedule(&with_spec(json!({})), std::slice::from_ref(&s)), Ok(0));
        s.add_pod(&with_spec(json!({})));
        assert_eq!(message(&with_spec(json!({})), &[s]), one("Too many pods"));
    }

    fn with_ports(ports: Value) -> Pod {
        pod(json!({"spec": {"containers": [{"name": "c", "ports": ports}]}}))
    }

    fn fits_ports(s: &NodeState, ports: Value) -> bool {
        schedule(&with_ports(ports), std::slice::from_ref(s)).is_ok()
    }

    #[test]
    fn host_ports_conflict_on_protocol_port_and_overlapping_ip() {
        let mut s = node("n");
        s.add_pod(&with_ports(json!([
            {"containerPort": 80, "hostPort": 80},
            {"containerPort": 53, "hostPort": 5353, "hostIP": "10.0.0.1", "protocol": "UDP"},
        ])));
        let fits = |ports: Value| fits_ports(&s, ports);
        assert!(!fits(json!([{"containerPort": 80, "hostPort": 80}])));
        assert!(!fits(json!([{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.9"}])));
        assert!(fits(json!([{"containerPort": 80, "hostPort": 80, "protocol": "UDP"}])));
        assert!(fits(json!([{"containerPort": 80, "hostPort": 81}])));
        assert!(fits(json!([{"containerPort": 80}])));
        assert!(!fits(json!([{"containerPort": 53, "hostPort": 5353, "protocol": "UDP"}])));
        assert!(!fits(json!([{"containerPort": 53, "hostPort": 5353, "hostIP": "10.0.0.1", "protocol": "UDP"}])));
        assert!(fits(json!([{"containerPort": 53, "hostPort": 5353, "hostIP": "10.0.0.2", "protocol": "UDP"}])));
        assert_eq!(
            message(&with_ports(json!([{"containerPort": 80, "hostPort": 80}])), std::slice::from_ref(&s)),
            one("node(s) didn't have free ports for the requested pod ports")
        );
        // Host-network pods claim their container ports.
        let host = pod(json!({"spec": {"hostNetwork": true, "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}}));
        assert!(schedule(&host, std::slice::from_ref(&s)).is_err());
        s.remove_pod(&with_ports(json!([{"containerPort": 80, "hostPort": 80}])));
        assert!(fits_ports(&s, json!([{"containerPort": 80, "hostPort": 80}])));
    }

    #[test]
    fn message_sorts_mixed_reasons() {
        let tainted = |name: &str| {
            let mut v = node_value(name, "4", "8Gi");
            v["spec"]["taints"] = json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]);
            state(v)
        };
        let nodes = [tainted("a"), state(node_value("b", "1", "8Gi")), tainted("c")];
        let err = schedule(&asking("2", "1Gi"), &nodes).unwrap_err();
        assert_eq!(
            err.message,
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
        );
        assert_eq!(err.reasons.values().sum::<usize>(), 3);
    }

    #[test]
    fn spreads_an_owners_pods() {
        let mut nodes = [node("a"), node("b"), node("c")];
        let p = pod(json!({
            "metadata": owned_by("rs-1"),
            "spec": {"containers": [{"name": "c"}]},
        }));
        for _ in 0..10 {
            let i = schedule(&p, &nodes).unwrap();
            nodes[i].add_pod(&p);
        }
        let counts: Vec<u32> = nodes.iter().map(|n| n.owned.get("rs-1").copied().unwrap_or(0)).collect();
        assert_eq!(counts, [4, 3, 3]);
    }

    #[test]
    fn pods_without_requests_still_spread() {
        let mut nodes = [node("a"), node("b")];
        for _ in 0..4 {
            let p = with_spec(json!({}));
            let i = schedule(&p, &nodes).unwrap();
            nodes[i].add_pod(&p);
        }
        assert_eq!(nodes.iter().map(|n| n.requested.pods).collect::<Vec<_>>(), [2, 2]);
    }

    #[test]
    fn prefers_the_least_allocated_node() {
        let mut a = node("a");
        a.add_pod(&asking("2", "1Gi"));
        let nodes = [a, node("b")];
        assert_eq!(schedule(&asking("100m", "128Mi"), &nodes), Ok(1));
    }

    #[test]
    fn ties_go_to_the_lowest_name() {
        let nodes = [node("b"), node("c"), node("a")];
        assert_eq!(schedule(&asking("100m", "128Mi"), &nodes), Ok(2));
    }

    #[test]
    fn preferred_affinity_pulls() {
        let mut b = node_value("b", "4", "8Gi");
        b["metadata"]["labels"] = json!({"disk": "ssd"});
        let mut c = node_value("c", "4", "8Gi");
        c["metadata"]["labels"] = json!({"disk": "ssd", "zone": "x"});
        let nodes = [node("a"), state(b), state(c)];
        let prefer =
            |terms: Value| with_spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}}));
        let ssd = json!({"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}});
        let zone = json!({"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}});
        assert_eq!(schedule(&prefer(json!([ssd])), &nodes), Ok(1));
        assert_eq!(schedule(&prefer(json!([ssd, zone])), &nodes), Ok(2));
        // A preference never overrides a filter.
        let mut full_c = nodes[2].clone();
        full_c.add_pod(&asking("4", "1Gi"));
        let nodes = [node("a"), full_c];
        let mut v = json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [ssd, zone]}}}});
        v["spec"]["containers"] = json!([{"name": "c", "resources": {"requests": {"cpu": "1"}}}]);
        assert_eq!(schedule(&pod(v), &nodes), Ok(0));
    }
}
