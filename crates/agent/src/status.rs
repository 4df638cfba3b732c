//! What the pod manager knows about each pod ([`PodState`], one [`ContainerRecord`] per
//! container) and how that becomes the `PodStatus` the kubelet would report: phase by the
//! kubelet's rules, the PodReadyToStartContainers / Initialized / ContainersReady / Ready /
//! PodScheduled conditions with their transition times, and container statuses with state,
//! lastState, ready, started and restartCount. Start at [`PodState::status`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::quantity;
use crate::runtime::{ContainerLaunch, InstanceId};

/// How an instance ended, as `state.terminated` / `lastState.terminated` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`, `ContainerStatusUnknown`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    /// The instance's restart count.
    pub attempt: u32,
    pub container_id: Option<String>,
}

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Current {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
        attempt: u32,
        id: InstanceId,
        container_id: String,
        /// Kept so that a later agent can adopt and exec into the instance.
        launch: Box<ContainerLaunch>,
    },
    Terminated(Terminated),
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// The image the runtime resolved (`imageID`); the reference itself where it has none.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Instances started so far; the restart count is one less.
    pub starts: u32,
    pub current: Current,
    /// The instance before the current one, once there was one.
    pub last: Option<Terminated>,
    /// Readiness (probe results are not persisted: a re-adopted container probes again).
    #[serde(skip)]
    pub ready: bool,
    /// Startup probe passed (or none).
    #[serde(skip)]
    pub started: bool,
}

impl ContainerRecord {
    pub fn new(c: &Container, waiting_reason: &str) -> ContainerRecord {
        ContainerRecord {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: None,
            starts: 0,
            current: Current::Waiting { reason: waiting_reason.to_string(), message: None },
            last: None,
            ready: false,
            started: false,
        }
    }

    pub fn restart_count(&self) -> i32 {
        i32::try_from(self.starts.saturating_sub(1)).unwrap_or(i32::MAX)
    }

    /// Moves a terminated instance to `last`, so that the next state can take its place.
    fn retire(&mut self) {
        if let Current::Terminated(t) = &self.current {
            self.last = Some(t.clone());
        }
        self.ready = false;
        self.started = false;
    }

    pub fn set_waiting(&mut self, reason: &str, message: Option<String>) {
        self.retire();
        self.current = Current::Waiting { reason: reason.to_string(), message };
    }

    pub fn set_running(&mut self, started_at: Timestamp, id: InstanceId, container_id: String, launch: ContainerLaunch) {
        self.retire();
        self.current = Current::Running { started_at, attempt: launch.attempt, id, container_id, launch: Box::new(launch) };
    }

    pub fn set_terminated(&mut self, t: Terminated) {
        self.retire();
        self.current = Current::Terminated(t);
    }

    /// The running instance, if any.
    pub fn running(&self) -> Option<(InstanceId, &ContainerLaunch)> {
        match &self.current {
            Current::Running { id, launch, .. } => Some((id.clone(), &**launch)),
            _ => None,
        }
    }

    /// The terminated instance in `current`, if any.
    pub fn terminated(&self) -> Option<&Terminated> {
        match &self.current {
            Current::Terminated(t) => Some(t),
            _ => None,
        }
    }

    pub fn to_status(&self) -> ContainerStatus {
        let (state, container_id) = match &self.current {
            Current::Waiting { reason, message } => (
                ContainerState {
                    waiting: Some(ContainerStateWaiting { reason: Some(reason.clone()), message: message.clone() }),
                    ..Default::default()
                },
                None,
            ),
            Current::Running { started_at, container_id, .. } => (
                ContainerState { running: Some(ContainerStateRunning { started_at: Some(Time(*started_at)) }), ..Default::default() },
                Some(container_id.clone()),
            ),
            Current::Terminated(t) => (terminated_state(t), t.container_id.clone()),
        };
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            // The process runtime has no images: the reference is all there is.
            image_id: self.image_id.clone().unwrap_or_else(|| self.image.clone()),
            container_id,
            ready: self.ready,
            restart_count: self.restart_count(),
            started: Some(self.started && matches!(self.current, Current::Running { .. })),
            state: Some(state),
            last_state: Some(self.last.as_ref().map(terminated_state).unwrap_or_default()),
            ..Default::default()
        }
    }
}

fn terminated_state(t: &Terminated) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: t.started_at.map(Time),
            finished_at: Some(Time(t.finished_at)),
            container_id: t.container_id.clone(),
        }),
        ..Default::default()
    }
}

/// Everything the pod manager knows about one pod.
#[derive(Debug, Clone)]
pub struct PodState {
    /// The pod as last synced.
    pub pod: Pod,
    pub start_time: Timestamp,
    pub init: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    /// Directories, volumes and cgroup are set up.
    pub sandbox_ready: bool,
    /// Why the sandbox is not ready (a volume that could not be set up).
    pub sandbox_message: Option<String>,
    /// Condition type → (status, last transition).
    pub conditions: BTreeMap<String, (bool, Timestamp)>,
}

/// The part of [`PodState`] written to disk (`state.json`); the pod itself is `pod.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    pub start_time: Timestamp,
    pub sandbox_ready: bool,
    pub init: Vec<ContainerRecord>,
    pub containers: Vec<ContainerRecord>,
    pub conditions: Vec<(String, bool, Timestamp)>,
}

/// A condition as computed, before its transition time is attached.
struct Cond {
    type_: &'static str,
    status: bool,
    reason: Option<String>,
    message: Option<String>,
}

impl PodState {
    /// A pod seen for the first time: every container waiting.
    pub fn new(pod: Pod, now: Timestamp) -> PodState {
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
        let init = spec.init_containers.iter().flatten().map(|c| ContainerRecord::new(c, "PodInitializing")).collect();
        let regular_reason = if has_init { "PodInitializing" } else { "ContainerCreating" };
        let containers = spec.containers.iter().map(|c| ContainerRecord::new(c, regular_reason)).collect();
        let mut state =
            PodState { pod, start_time: now, init, containers, sandbox_ready: false, sandbox_message: None, conditions: BTreeMap::new() };
        state.refresh_conditions(now);
        state
    }

    /// A pod read back from disk.
    pub fn restore(pod: Pod, saved: SavedState) -> PodState {
        let mut state = PodState::new(pod, saved.start_time);
        // Records are matched by name, so that a spec and a state that disagree (they should
        // not) cannot mix up containers.
        for rec in saved.init {
            if let Some(slot) = state.init.iter_mut().find(|r| r.name == rec.name) {
                *slot = rec;
            }
        }
        for rec in saved.containers {
            if let Some(slot) = state.containers.iter_mut().find(|r| r.name == rec.name) {
                *slot = rec;
            }
        }
        state.sandbox_ready = saved.sandbox_ready;
        state.conditions = saved.conditions.into_iter().map(|(t, s, at)| (t, (s, at))).collect();
        state
    }

    pub fn save(&self) -> SavedState {
        SavedState {
            start_time: self.start_time,
            sandbox_ready: self.sandbox_ready,
            init: self.init.clone(),
            containers: self.containers.clone(),
            conditions: self.conditions.iter().map(|(t, (s, at))| (t.clone(), *s, *at)).collect(),
        }
    }

    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }

    pub fn restart_policy(&self) -> &str {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
    }

    /// Init containers with `restartPolicy: Always` (sidecars) run alongside the others.
    fn init_specs(&self) -> Vec<Container> {
        self.pod.spec.as_ref().and_then(|s| s.init_containers.clone()).unwrap_or_default()
    }

    /// The record of a container (regular or init) by name.
    pub fn record(&self, name: &str) -> Option<&ContainerRecord> {
        self.containers.iter().chain(self.init.iter()).find(|r| r.name == name)
    }

    pub fn record_mut(&mut self, name: &str) -> Option<&mut ContainerRecord> {
        self.containers.iter_mut().chain(self.init.iter_mut()).find(|r| r.name == name)
    }

    /// Init containers still to do, by name (sidecars count until they have started).
    fn pending_init(&self) -> Vec<String> {
        let specs = self.init_specs();
        self.init
            .iter()
            .filter(|r| {
                let sidecar = specs.iter().any(|c| c.name == r.name && c.restart_policy.as_deref() == Some("Always"));
                if sidecar { !r.started } else { r.terminated().is_none_or(|t| t.exit_code != 0) }
            })
            .map(|r| r.name.clone())
            .collect()
    }

    /// An init container failed for good (restartPolicy Never).
    fn init_failed(&self) -> bool {
        self.restart_policy() == "Never" && self.init.iter().any(|r| r.terminated().is_some_and(|t| t.exit_code != 0))
    }

    /// The pod phase by the kubelet's rules.
    pub fn phase(&self) -> &'static str {
        if self.init_failed() {
            return "Failed";
        }
        if !self.pending_init().is_empty() {
            return "Pending";
        }
        let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for r in &self.containers {
            match &r.current {
                Current::Running { .. } => running += 1,
                Current::Terminated(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                Current::Waiting { .. } if r.last.is_some() => stopped += 1,
                Current::Waiting { .. } => waiting += 1,
            }
        }
        match (waiting > 0, running > 0, stopped > 0) {
            (true, _, _) | (false, false, false) => "Pending",
            (false, true, _) => "Running",
            // Everything stopped: restarting, or done for good.
            (false, false, true) => match self.restart_policy() {
                "Always" => "Running",
                _ if stopped == succeeded => "Succeeded",
                "Never" => "Failed",
                _ => "Running",
            },
        }
    }

    fn compute_conditions(&self) -> Vec<Cond> {
        let phase = self.phase();
        let completed = phase == "Succeeded" || phase == "Failed";
        let pending = self.pending_init();
        let initialized = pending.is_empty();
        let specs = self.init_specs();
        let sidecars = self.init.iter().filter(|r| specs.iter().any(|c| c.name == r.name && c.restart_policy.as_deref() == Some("Always")));
        let unready: Vec<String> = self.containers.iter().chain(sidecars).filter(|r| !r.ready).map(|r| r.name.clone()).collect();
        let containers_ready = unready.is_empty() && initialized;
        let (cr_reason, cr_message) = if completed {
            (Some("PodCompleted".to_string()), None)
        } else if containers_ready {
            (None, None)
        } else {
            (Some("ContainersNotReady".to_string()), Some(format!("containers with unready status: [{}]", unready.join(" "))))
        };
        let gates = self.readiness_gates();
        let ready = containers_ready && !completed && gates.is_none();
        let (ready_reason, ready_message) = match (&cr_reason, gates) {
            (Some(r), _) => (Some(r.clone()), cr_message.clone()),
            (None, Some(msg)) => (Some("ReadinessGatesNotReady".to_string()), Some(msg)),
            (None, None) => (None, None),
        };
        let scheduled = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .is_none_or(|c| c.status == "True");
        vec![
            Cond { type_: "PodReadyToStartContainers", status: self.sandbox_ready, reason: None, message: None },
            Cond {
                type_: "Initialized",
                status: initialized,
                reason: (!initialized).then(|| "ContainersNotInitialized".to_string()),
                message: (!initialized).then(|| format!("containers with incomplete status: [{}]", pending.join(" "))),
            },
            Cond { type_: "Ready", status: ready, reason: ready_reason, message: ready_message },
            Cond { type_: "ContainersReady", status: containers_ready && !completed, reason: cr_reason, message: cr_message },
            Cond { type_: "PodScheduled", status: scheduled, reason: None, message: None },
        ]
    }

    /// `None` when every readiness gate's condition is True in the synced pod's status;
    /// otherwise why not.
    fn readiness_gates(&self) -> Option<String> {
        let gates = self.pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref())?;
        let conditions = self.pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        for g in gates {
            match conditions.and_then(|cs| cs.iter().find(|c| c.type_ == g.condition_type)) {
                None => return Some(format!("corresponding condition of pod readiness gate \"{}\" does not exist.", g.condition_type)),
                Some(c) if c.status != "True" => {
                    return Some(format!("the status of pod readiness gate \"{}\" is not \"True\", but {}", g.condition_type, c.status));
                }
                Some(_) => {}
            }
        }
        None
    }

    /// Records a transition time for every condition whose status changed.
    pub fn refresh_conditions(&mut self, now: Timestamp) {
        for c in self.compute_conditions() {
            match self.conditions.get(c.type_) {
                Some((status, _)) if *status == c.status => {}
                _ => {
                    self.conditions.insert(c.type_.to_string(), (c.status, now));
                }
            }
        }
    }

    /// The pod's status as the kubelet reports it. Processes share the host's network, so
    /// the pod IP is the node IP.
    pub fn status(&self, node_ip: &str) -> PodStatus {
        let existing = self.pod.status.as_ref();
        let conditions = self
            .compute_conditions()
            .into_iter()
            .map(|c| {
                let since = self.conditions.get(c.type_).map_or(self.start_time, |(_, at)| *at);
                // The scheduler's own PodScheduled condition is kept as it wrote it.
                if c.type_ == "PodScheduled"
                    && let Some(theirs) =
                        existing.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().find(|x| x.type_ == "PodScheduled"))
                {
                    return theirs.clone();
                }
                PodCondition {
                    type_: c.type_.to_string(),
                    status: if c.status { "True" } else { "False" }.to_string(),
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: Some(Time(since)),
                    ..Default::default()
                }
            })
            .collect();
        let init_statuses: Vec<ContainerStatus> = self.init.iter().map(ContainerRecord::to_status).collect();
        PodStatus {
            phase: Some(self.phase().to_string()),
            conditions: Some(conditions),
            host_ip: Some(node_ip.to_string()),
            host_ips: Some(vec![HostIP { ip: node_ip.to_string() }]),
            pod_ip: Some(node_ip.to_string()),
            pod_ips: Some(vec![PodIP { ip: node_ip.to_string() }]),
            start_time: Some(Time(self.start_time)),
            qos_class: existing.and_then(|s| s.qos_class.clone()).or_else(|| Some(qos_class(&self.pod).to_string())),
            container_statuses: Some(self.containers.iter().map(ContainerRecord::to_status).collect()),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            message: self.sandbox_message.clone(),
            nominated_node_name: existing.and_then(|s| s.nominated_node_name.clone()),
            ..Default::default()
        }
    }
}

/// The pod's QoS class: Guaranteed when every container has cpu and memory limits equal to
/// its requests, BestEffort when none has any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else { return "BestEffort" };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let res = c.resources.as_ref();
        for name in ["cpu", "memory"] {
            let get = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
                m.and_then(|m| m.get(name)).and_then(|q| quantity::parse_milli(&q.0)).filter(|&v| v != 0)
            };
            let limit = get(res.and_then(|r| r.limits.as_ref()));
            let request = get(res.and_then(|r| r.requests.as_ref())).or(limit);
            if limit.is_some() || request.is_some() {
                any = true;
            }
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(policy: &str, init: bool) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "busybox"}, {"name": "b"}]}
        });
        if init {
            v["spec"]["initContainers"] = serde_json::json!([{"name": "i"}]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn terminated(code: i32) -> Terminated {
        Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            attempt: 0,
            container_id: None,
        }
    }

    fn launch() -> ContainerLaunch {
        ContainerLaunch {
            pod_uid: "u".into(),
            hostname: "p".into(),
            container: "a".into(),
            attempt: 0,
            image: String::new(),
            command: vec!["true".into()],
            args: Vec::new(),
            log: std::path::PathBuf::new(),
            env: vec![],
            working_dir: None,
            mounts: vec![],
            limits: Default::default(),
            run_as: None,
            stdout: "/dev/null".into(),
            stderr: "/dev/null".into(),
            exit_file: "/dev/null".into(),
        }
    }

    fn run(r: &mut ContainerRecord) {
        r.starts += 1;
        r.set_running(Timestamp::UNIX_EPOCH, InstanceId { pid: 1, start_ticks: 1, handle: None }, "process://1".into(), launch());
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let now = Timestamp::UNIX_EPOCH;
        let mut s = PodState::new(pod("Never", true), now);
        assert_eq!(s.phase(), "Pending");
        assert_eq!(s.containers[0].to_status().state.unwrap().waiting.unwrap().reason.as_deref(), Some("PodInitializing"));
        s.init[0].set_terminated(terminated(1));
        assert_eq!(s.phase(), "Failed");
        s.init[0].set_terminated(terminated(0));
        assert_eq!(s.phase(), "Pending");
        run(&mut s.containers[0]);
        run(&mut s.containers[1]);
        assert_eq!(s.phase(), "Running");
        s.containers[0].set_terminated(terminated(0));
        assert_eq!(s.phase(), "Running");
        s.containers[1].set_terminated(terminated(2));
        assert_eq!(s.phase(), "Failed");

        let mut s = PodState::new(pod("OnFailure", false), now);
        for r in &mut s.containers {
            run(r);
            r.set_terminated(terminated(0));
        }
        assert_eq!(s.phase(), "Succeeded");
        s.containers[1].set_terminated(terminated(3));
        s.containers[1].set_waiting("CrashLoopBackOff", None);
        assert_eq!(s.phase(), "Running");
        let st = s.containers[1].to_status();
        assert_eq!(st.last_state.unwrap().terminated.unwrap().exit_code, 3);
        assert_eq!(st.state.unwrap().waiting.unwrap().reason.as_deref(), Some("CrashLoopBackOff"));
    }

    #[test]
    fn conditions_and_transition_times() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(100).unwrap();
        let mut s = PodState::new(pod("Always", false), t0);
        s.sandbox_ready = true;
        for r in &mut s.containers {
            run(r);
            r.started = true;
            r.ready = true;
        }
        s.refresh_conditions(t1);
        let st = s.status("10.0.0.5");
        let ready = st.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.last_transition_time.as_ref().unwrap().0), ("True", t1));
        let initialized = st.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Initialized").unwrap();
        assert_eq!(initialized.last_transition_time.as_ref().unwrap().0, t0);
        assert_eq!(st.pod_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(st.container_statuses.as_ref().unwrap()[0].started, Some(true));
        assert!(st.init_container_statuses.is_none());

        s.containers[1].ready = false;
        s.refresh_conditions(t1);
        let st = s.status("10.0.0.5");
        let cr = st.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "ContainersReady").unwrap();
        assert_eq!(cr.message.as_deref(), Some("containers with unready status: [b]"));

        let saved = s.save();
        let back = PodState::restore(s.pod.clone(), serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap());
        // Probe results are not persisted.
        assert_eq!(serde_json::to_value(back.save()).unwrap(), serde_json::to_value(&saved).unwrap());
    }

    #[test]
    fn qos_classes() {
        let mut p = pod("Always", false);
        assert_eq!(qos_class(&p), "BestEffort");
        let both = serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}});
        for c in &mut p.spec.as_mut().unwrap().containers {
            c.resources = Some(serde_json::from_value(both.clone()).unwrap());
        }
        assert_eq!(qos_class(&p), "Guaranteed");
        p.spec.as_mut().unwrap().containers[0].resources =
            Some(serde_json::from_value(serde_json::json!({"requests": {"cpu": "1"}})).unwrap());
        assert_eq!(qos_class(&p), "Burstable");
    }
}
