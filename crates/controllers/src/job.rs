//! The Job controller (batch/v1): runs a Job's pods until `completions` of them succeed or it
//! gives up, as kube-controller-manager's job controller does. [`plan`] is the whole decision
//! — pods to create and delete, conditions, counters, when to look again — as a pure function
//! of the Job, what its pods look like ([`Counts`]) and the time; `reconcile` only gathers
//! the pods, carries the plan out and patches status.
//!
//! What it does: pods from `spec.template` (named `<job>-<5 random>`, labelled with the
//! controller uid and job name, new and legacy keys, controlled by the Job); at most
//! `parallelism` active and never more than the completions still missing (a Job without
//! `completions` is a work queue: done when one pod succeeded and none still runs); the
//! exponential back-off after failed pods (10 s, 20 s, 40 s … capped at six minutes);
//! `backoffLimit` (restarts count under restartPolicy OnFailure), `activeDeadlineSeconds`,
//! `suspend`, and `ttlSecondsAfterFinished`. Conditions follow Kubernetes 1.31+:
//! `SuccessCriteriaMet` or `FailureTarget` first, then `Complete` or `Failed` once no pod of
//! the Job is running or terminating.
//!
//! **Counting without finalizers.** Kubernetes puts a tracking finalizer on every Job pod so
//! that a finished pod is counted exactly once even if it is deleted. We do not: succeeded
//! and failed are counted from the finished pods that still exist, and the status counters
//! never go down. A finished pod deleted by hand before the Job finishes is therefore
//! forgotten — a later finish can take its place in the counter, so the Job may run more
//! pods than it would under Kubernetes. Pods deleted while still running (by hand, or by
//! this controller on suspend or scale-down) are not counted as failed.
//!
//! Not supported: `completionMode: Indexed` (left alone, with a warning), `podFailurePolicy`,
//! `successPolicy` and `backoffLimitPerIndex` (ignored), adoption of orphan pods by a manual
//! selector (a Job's pods are the ones it controls). A Job with `managedBy` naming another
//! controller is left to it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;

use crate::util::{Expectations, controller_of, controller_ref, is_pod_active, is_pod_ready};

pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The unprefixed labels older clients select on; Kubernetes still sets both.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// The `spec.managedBy` value that means this controller.
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";

const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// The wait before replacing the first failed pod; it doubles with each further failure.
const POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(6 * 60);
/// How often a Job waiting for its pods to go looks again: the shared pod stream reports
/// changes, not removals.
const TERMINATION_POLL: Duration = Duration::from_secs(1);
/// How often a Job whose expectations are not met yet looks again.
const UNSETTLED_POLL: Duration = Duration::from_secs(5);
/// Most pods one pass creates or deletes.
const BURST: usize = 500;

pub use crate::util::Error;

pub struct Ctx {
    pub client: Client,
    pub pods: Store<Pod>,
    pub expectations: Expectations,
}

/// Runs the controller until the returned future is dropped.
pub async fn run(client: Client, pods: Store<Pod>, pod_events: impl futures::Stream<Item = Arc<Pod>> + Send + 'static) {
    let ctx = Arc::new(Ctx { client: client.clone(), pods, expectations: Expectations::default() });
    crate::util::drive(
        Controller::new(Api::<Job>::all(client), watcher::Config::default()).owns_shared_stream(pod_events),
        reconcile,
        ctx,
        "job",
        Duration::from_secs(1),
    )
    .await;
}

/// What one pass saw of a Job's own pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Neither finished nor being deleted.
    pub active: i32,
    /// Active and Ready.
    pub ready: i32,
    /// Being deleted and not finished.
    pub terminating: i32,
    /// In phase Succeeded.
    pub succeeded: i32,
    /// In phase Failed.
    pub failed: i32,
    /// Container restarts in pods that have not finished; they count toward the backoff
    /// limit under restartPolicy OnFailure, where the node restarts containers in place.
    pub restarts: i32,
    /// Failed pods that finished after the last successful one: the pod back-off grows with it.
    pub failures_since_success: u32,
    /// When the latest of those finished.
    pub last_failure: Option<Timestamp>,
}

impl Counts {
    pub fn of(pods: &[Arc<Pod>]) -> Counts {
        let mut c = Counts::default();
        let mut last_success: Option<Timestamp> = None;
        let mut failures: Vec<Timestamp> = Vec::new();
        for p in pods {
            match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Succeeded") => {
                    c.succeeded += 1;
                    last_success = last_success.max(Some(finish_time(p)));
                }
                Some("Failed") => {
                    c.failed += 1;
                    failures.push(finish_time(p));
                }
                _ => {
                    c.restarts = c.restarts.saturating_add(restarts(p));
                    if p.metadata.deletion_timestamp.is_some() {
                        c.terminating += 1;
                    } else {
                        c.active += 1;
                        if is_pod_ready(p) {
                            c.ready += 1;
                        }
                    }
                }
            }
        }
        let since: Vec<Timestamp> = failures.into_iter().filter(|t| Some(*t) > last_success).collect();
        c.failures_since_success = u32::try_from(since.len()).unwrap_or(u32::MAX);
        c.last_failure = since.into_iter().max();
        c
    }
}

/// When a finished pod finished: its last container's exit, else when it stopped being
/// Ready, else when it was deleted or created.
fn finish_time(p: &Pod) -> Timestamp {
    let status = p.status.as_ref();
    let exited = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    let unready =
        || status.and_then(|s| s.conditions.as_ref())?.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref().map(|t| t.0);
    exited
        .or_else(unready)
        .or_else(|| p.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .fold(0i32, |n, c| n.saturating_add(c.restart_count.max(0)))
}

/// What a pass should do to a Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Pods to create (a pass creates at most 500 of them, in slow-start batches).
    pub create: usize,
    /// Active pods to delete, the least valuable first.
    pub delete: usize,
    /// The status once the above is done.
    pub status: JobStatus,
    /// Delete the Job itself: it finished more than `ttlSecondsAfterFinished` ago.
    pub delete_job: bool,
    /// Look again after this long even if nothing changes.
    pub requeue: Option<Duration>,
}

/// How a Job is ending.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Success,
    Failure { reason: String, message: String },
}

const COMPLETIONS_REACHED: (&str, &str) = ("CompletionsReached", "Reached expected number of succeeded pods");
const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = ("BackoffLimitExceeded", "Job has reached the specified backoff limit");
const DEADLINE_EXCEEDED: (&str, &str) = ("DeadlineExceeded", "Job was active longer than specified deadline");

/// Decides a pass over `job`, whose pods look like `counts`, at `now`. `settled` says the pod
/// cache shows every creation and deletion asked for earlier; until it does, no pods are
/// created or deleted to reach a count, and the Job does not finish.
pub fn plan(job: &Job, counts: &Counts, settled: bool, now: Timestamp) -> Plan {
    // Times in status have whole seconds on the wire: keep them so, so that what we write
    // compares equal to what we read back.
    let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let stamp = Time(now);
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let ttl = spec.ttl_seconds_after_finished.map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));

    // A finished Job is left alone but for its time to live.
    if let Some(finished) = finished(&old) {
        let at = finished.last_transition_time.as_ref().or(old.completion_time.as_ref()).map(|t| t.0);
        let expires = at.zip(ttl).map(|(at, ttl)| at.checked_add(ttl).unwrap_or(Timestamp::MAX));
        let delete_job = expires.is_some_and(|e| e <= now);
        let requeue = expires.filter(|_| !delete_job).map(|e| until(now, e));
        return Plan { create: 0, delete: 0, status: old, delete_job, requeue };
    }

    let mut status = old.clone();
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let active = counts.active;
    let suspended = spec.suspend.unwrap_or(false);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT).max(0);
    let on_failure = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    // The counters never go down: a finished pod deleted since it was counted stays counted.
    let succeeded = counts.succeeded.max(old.succeeded.unwrap_or(0));
    let failed = counts.failed.max(old.failed.unwrap_or(0));
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(stamp.clone());
    }
    // Resuming restarts the clock of activeDeadlineSeconds (which counts continuous running).
    if !suspended && set_condition(&mut conditions, "Suspended", "False", "JobResumed", "Job resumed", &stamp) {
        status.start_time = Some(stamp.clone());
    }
    let deadline = match (spec.active_deadline_seconds, &status.start_time) {
        (Some(secs), Some(start)) if !suspended => {
            Some(start.0.checked_add(Duration::from_secs(u64::try_from(secs).unwrap_or(0))).unwrap_or(Timestamp::MAX))
        }
        _ => None,
    };

    // An ending once decided stands; otherwise failure is checked before success, as
    // Kubernetes does.
    let target = |t: &str| conditions.iter().find(|c| c.type_ == t && c.status == "True");
    let restarts_exceed = on_failure && if backoff_limit == 0 { counts.restarts > 0 } else { counts.restarts >= backoff_limit };
    let failure = |(reason, message): (&str, &str)| Ending::Failure { reason: reason.into(), message: message.into() };
    let success = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active == 0,
    };
    let ending = if let Some(c) = target("FailureTarget") {
        Some(Ending::Failure { reason: c.reason.clone().unwrap_or_default(), message: c.message.clone().unwrap_or_default() })
    } else if target("SuccessCriteriaMet").is_some() {
        Some(Ending::Success)
    } else if failed > backoff_limit || restarts_exceed {
        Some(failure(BACKOFF_LIMIT_EXCEEDED))
    } else if deadline.is_some_and(|d| d <= now) {
        Some(failure(DEADLINE_EXCEEDED))
    } else if success {
        Some(Ending::Success)
    } else {
        None
    };

    let mut create = 0;
    let mut delete = 0;
    let mut requeue: Option<Duration> = None;
    match ending {
        Some(ending) => {
            // Stop every pod; the Job is Complete or Failed once none runs or terminates.
            delete = as_usize(active);
            let (target, terminal, reason, message) = match &ending {
                Ending::Success => ("SuccessCriteriaMet", "Complete", COMPLETIONS_REACHED.0, COMPLETIONS_REACHED.1),
                Ending::Failure { reason, message } => ("FailureTarget", "Failed", reason.as_str(), message.as_str()),
            };
            set_condition(&mut conditions, target, "True", reason, message, &stamp);
            if settled && active == 0 && counts.terminating == 0 {
                set_condition(&mut conditions, terminal, "True", reason, message, &stamp);
                if ending == Ending::Success {
                    status.completion_time = Some(stamp.clone());
                }
                requeue = ttl;
            } else {
                requeue = Some(if settled { TERMINATION_POLL } else { UNSETTLED_POLL });
            }
        }
        None if suspended => {
            delete = as_usize(active);
            set_condition(&mut conditions, "Suspended", "True", "JobSuspended", "Job suspended", &stamp);
        }
        None => {
            let want = match spec.completions {
                // A work queue: once one pod succeeded, the rest finish on their own.
                None if succeeded > 0 => active,
                None => parallelism,
                Some(c) => c.saturating_sub(succeeded).clamp(0, parallelism),
            };
            if !settled {
                requeue = Some(UNSETTLED_POLL);
            } else if active < want {
                let wait = backoff_remaining(counts, now);
                if wait.is_zero() {
                    create = as_usize(want - active);
                } else {
                    requeue = Some(wait);
                }
            } else if active > want {
                delete = as_usize(active - want);
            }
            if let Some(d) = deadline {
                let left = until(now, d);
                requeue = Some(requeue.map_or(left, |r| r.min(left)));
            }
        }
    }

    status.conditions = if conditions.is_empty() { None } else { Some(conditions) };
    status.active = Some(active.saturating_add(as_i32(create)).saturating_sub(as_i32(delete)));
    status.ready = Some(counts.ready);
    status.terminating = Some(counts.terminating.saturating_add(as_i32(delete)));
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    Plan { create, delete, status, delete_job: false, requeue }
}

/// The condition that says a Job is over: `Complete` or `Failed`, True.
fn finished(status: &JobStatus) -> Option<&JobCondition> {
    status.conditions.iter().flatten().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Sets condition `type_` as Kubernetes does: a change of status moves both times; a
/// condition that is not there is added only when True. Returns whether the status changed.
fn set_condition(conditions: &mut Vec<JobCondition>, type_: &str, status: &str, reason: &str, message: &str, now: &Time) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status != status => {
            c.status = status.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = Some(now.clone());
            c.last_transition_time = Some(now.clone());
            true
        }
        Some(c) => {
            if c.reason.as_deref() != Some(reason) || c.message.as_deref() != Some(message) {
                c.reason = Some(reason.into());
                c.message = Some(message.into());
                c.last_probe_time = Some(now.clone());
            }
            false
        }
        None if status == "True" => {
            conditions.push(JobCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_probe_time: Some(now.clone()),
                last_transition_time: Some(now.clone()),
            });
            true
        }
        None => false,
    }
}

/// How long until the next pod may replace a failed one: 10 s after the first failure since
/// the last success, doubling with each further one, at most six minutes.
fn backoff_remaining(counts: &Counts, now: Timestamp) -> Duration {
    let Some(last) = counts.last_failure.filter(|_| counts.failures_since_success > 0) else {
        return Duration::ZERO;
    };
    let mut backoff = POD_FAILURE_BACKOFF;
    for _ in 1..counts.failures_since_success.min(32) {
        backoff = (backoff * 2).min(MAX_POD_FAILURE_BACKOFF);
    }
    until(now, last.checked_add(backoff).unwrap_or(Timestamp::MAX))
}

/// The time from `now` to `at`; zero when `at` has passed.
fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(at.as_millisecond().saturating_sub(now.as_millisecond())).unwrap_or(0))
}

fn as_usize(n: i32) -> usize {
    usize::try_from(n).unwrap_or(0)
}

fn as_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let key = crate::util::key(&job.metadata);
    if job.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
        return Ok(Action::await_change());
    }
    let spec = job.spec.as_ref();
    if spec.and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != MANAGED_BY) {
        return Ok(Action::await_change());
    }
    if spec.and_then(|s| s.completion_mode.as_deref()) == Some("Indexed") {
        tracing::warn!(job = %key, "completionMode Indexed is not supported; the job is left alone");
        return Ok(Action::await_change());
    }

    let in_ns: Vec<Arc<Pod>> = ctx.pods.state_filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let owned: Vec<Arc<Pod>> = in_ns.iter().filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid)).cloned().collect();
    let present = |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name));
    let terminating =
        |name: &str| in_ns.iter().any(|p| p.metadata.name.as_deref() == Some(name) && p.metadata.deletion_timestamp.is_some());
    let settled = ctx.expectations.satisfied(&uid, present, terminating);
    let counts = Counts::of(&owned);
    let mut decision = plan(&job, &counts, settled, Timestamp::now());
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    if decision.delete_job {
        // Background propagation: the garbage collector removes the pods. The uid
        // precondition deletes exactly the Job we saw, never a new one of the same name.
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
            ..DeleteParams::background()
        };
        match jobs_api.delete(&job.name_any(), &dp).await {
            Ok(_) => tracing::info!(job = %key, "deleted: ttlSecondsAfterFinished has passed"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }

    let mut deleted = 0usize;
    if decision.delete > 0 {
        let mut active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_pod_active(p)).cloned().collect();
        active.sort_by_key(|p| crate::util::deletion_rank(p));
        let victims: Vec<(String, String)> =
            active.iter().take(decision.delete.min(BURST)).map(|p| (p.name_any(), p.uid().unwrap_or_default())).collect();
        for (name, _) in &victims {
            ctx.expectations.expect_delete(&uid, name.clone());
        }
        deleted = victims.len();
        crate::util::delete_pods(&pods_api, victims).await?;
    }
    let mut created = 0usize;
    if decision.create > 0 {
        let pods = create_slow_start(&job, &pods_api, decision.create.min(BURST)).await;
        for p in &pods {
            ctx.expectations.expect_add(&uid, p.name_any());
        }
        created = pods.len();
    }
    // The status counts what was done, which a failed creation or the burst cap cut short.
    if created < decision.create || deleted < decision.delete {
        decision.status.active = Some(counts.active.saturating_add(as_i32(created)).saturating_sub(as_i32(deleted)));
        decision.status.terminating = Some(counts.terminating.saturating_add(as_i32(deleted)));
        decision.requeue = Some(decision.requeue.map_or(UNSETTLED_POLL, |r| r.min(UNSETTLED_POLL)));
    }

    if job.status.as_ref() != Some(&decision.status) {
        match jobs_api.patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": decision.status}))).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
        if let (None, Some(how)) = (job.status.as_ref().and_then(finished), finished(&decision.status)) {
            let (succeeded, failed) = (decision.status.succeeded.unwrap_or(0), decision.status.failed.unwrap_or(0));
            tracing::info!(job = %key, succeeded, failed, "job {}", how.type_.to_lowercase());
        }
    }
    Ok(match decision.requeue {
        // Never sooner than a tenth of a second: a deadline met to the millisecond still
        // needs the clock to have passed it.
        Some(d) => Action::requeue(d.max(Duration::from_millis(100))),
        None => Action::await_change(),
    })
}

/// The pod a Job runs: its template, labelled with the Job's uid and name (the `batch.kubernetes.io/`
/// keys and the legacy ones) and controlled by it.
pub fn pod_for(job: &Job) -> Pod {
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let (name, uid) = (job.name_any(), job.uid().unwrap_or_default());
    let mut labels = meta.labels.unwrap_or_default();
    for (k, v) in
        [(CONTROLLER_UID_LABEL, &uid), (LEGACY_CONTROLLER_UID_LABEL, &uid), (JOB_NAME_LABEL, &name), (LEGACY_JOB_NAME_LABEL, &name)]
    {
        labels.insert(k.into(), v.clone());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates `need` pods for the Job in doubling batches; stops at the first failure.
async fn create_slow_start(job: &Job, api: &Api<Pod>, need: usize) -> Vec<Pod> {
    let (created, failed) = crate::util::create_slow_start(api, vec![pod_for(job); need]).await;
    if let Some(e) = failed {
        tracing::warn!(job = %crate::util::key(&job.metadata), error = %e, "creating pods failed; will retry");
    }
    created
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(T0 + secs).unwrap()
    }

    fn time(secs: i64) -> String {
        at(secs).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn counts(active: i32, succeeded: i32, failed: i32) -> Counts {
        Counts { active, succeeded, failed, ..Default::default() }
    }

    fn condition<'a>(p: &'a Plan, t: &str) -> Option<&'a JobCondition> {
        p.status.conditions.iter().flatten().find(|c| c.type_ == t)
    }

    fn types(p: &Plan) -> Vec<(String, String)> {
        p.status.conditions.iter().flatten().map(|c| (c.type_.clone(), c.status.clone())).collect()
    }

    fn pair(t: &str, s: &str) -> (String, String) {
        (t.into(), s.into())
    }

    #[test]
    fn a_new_job_starts_parallelism_pods_and_its_clock() {
        let p = plan(&job(json!({"completions": 3, "parallelism": 2}), json!({})), &counts(0, 0, 0), true, at(0));
        assert_eq!((p.create, p.delete, p.delete_job), (2, 0, false));
        assert_eq!(p.status.start_time, Some(Time(at(0))));
        assert_eq!(p.status.active, Some(2));
        assert_eq!(p.status.conditions, None);
        // One left to do: one pod, not two.
        let p = plan(&job(json!({"completions": 3, "parallelism": 2}), json!({})), &counts(1, 2, 0), true, at(0));
        assert_eq!((p.create, p.delete), (0, 0));
        let p = plan(&job(json!({"completions": 3, "parallelism": 2}), json!({})), &counts(0, 2, 0), true, at(0));
        assert_eq!(p.create, 1);
    }

    #[test]
    fn nothing_is_created_or_deleted_until_the_cache_shows_the_last_pass() {
        let p = plan(&job(json!({"completions": 3, "parallelism": 2}), json!({})), &counts(0, 0, 0), false, at(0));
        assert_eq!((p.create, p.delete), (0, 0));
        assert_eq!(p.requeue, Some(UNSETTLED_POLL));
    }

    #[test]
    fn lowered_parallelism_deletes_the_extras() {
        let p = plan(&job(json!({"completions": 10, "parallelism": 1}), json!({})), &counts(3, 0, 0), true, at(0));
        assert_eq!((p.create, p.delete), (0, 2));
        assert_eq!(p.status.active, Some(1));
        assert_eq!(p.status.terminating, Some(2));
    }

    #[test]
    fn enough_successes_complete_the_job_once_no_pod_runs() {
        let j = job(json!({"completions": 3, "parallelism": 2}), json!({"startTime": time(0)}));
        // Reached while a pod still runs: the target now, the pod stopped, Complete later.
        let p = plan(&j, &counts(1, 3, 0), true, at(5));
        assert_eq!(p.delete, 1);
        assert_eq!(types(&p), vec![pair("SuccessCriteriaMet", "True")]);
        assert_eq!(p.status.completion_time, None);
        assert_eq!(p.requeue, Some(TERMINATION_POLL));
        let after = Job { status: Some(p.status.clone()), ..j.clone() };
        let p = plan(&after, &counts(0, 3, 0), true, at(6));
        assert_eq!(types(&p), vec![pair("SuccessCriteriaMet", "True"), pair("Complete", "True")]);
        let c = condition(&p, "Complete").unwrap();
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("CompletionsReached"), Some("Reached expected number of succeeded pods"))
        );
        assert_eq!(condition(&p, "SuccessCriteriaMet").unwrap().last_transition_time, Some(Time(at(5))), "kept");
        assert_eq!(p.status.completion_time, Some(Time(at(6))));
        assert_eq!(p.status.start_time, Some(Time(at(0))), "kept");
        assert_eq!((p.status.succeeded, p.status.active), (Some(3), Some(0)));
        assert_eq!(p.requeue, None, "no ttl");
        // Pods still terminating hold the terminal condition back.
        let p = plan(&after, &Counts { terminating: 1, ..counts(0, 3, 0) }, true, at(6));
        assert!(condition(&p, "Complete").is_none());
    }

    #[test]
    fn a_work_queue_is_done_when_one_succeeded_and_the_rest_finished() {
        let j = job(json!({"parallelism": 3}), json!({}));
        assert_eq!(plan(&j, &counts(0, 0, 0), true, at(0)).create, 3);
        let p = plan(&j, &counts(2, 1, 0), true, at(0));
        assert_eq!((p.create, p.delete), (0, 0), "the others finish on their own");
        assert!(p.status.conditions.is_none());
        let p = plan(&j, &counts(0, 1, 0), true, at(0));
        assert_eq!(types(&p), vec![pair("SuccessCriteriaMet", "True"), pair("Complete", "True")]);
    }

    #[test]
    fn too_many_failures_fail_the_job() {
        let j = job(json!({"completions": 1, "backoffLimit": 2}), json!({"startTime": time(0)}));
        let p = plan(&j, &counts(0, 0, 2), true, at(50));
        assert!(p.status.conditions.is_none(), "2 failures are within a limit of 2");
        let p = plan(&j, &counts(1, 0, 3), true, at(50));
        assert_eq!((p.create, p.delete), (0, 1));
        assert_eq!(types(&p), vec![pair("FailureTarget", "True")]);
        let after = Job { status: Some(p.status.clone()), ..j.clone() };
        let p = plan(&after, &counts(0, 0, 3), true, at(51));
        assert_eq!(types(&p), vec![pair("FailureTarget", "True"), pair("Failed", "True")]);
        let c = condition(&p, "Failed").unwrap();
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("BackoffLimitExceeded"), Some("Job has reached the specified backoff limit"))
        );
        assert_eq!(p.status.completion_time, None, "only success completes");
        assert_eq!(p.status.failed, Some(3));
        assert_eq!(p.create, 0);
    }

    #[test]
    fn restarts_count_toward_the_limit_under_on_failure() {
        let mut j = job(json!({"completions": 1, "backoffLimit": 2}), json!({}));
        let restarting = Counts { restarts: 2, ..counts(1, 0, 0) };
        assert!(plan(&j, &restarting, true, at(0)).status.conditions.is_none(), "restartPolicy Never: restarts are not failures");
        j.spec.as_mut().unwrap().template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        let p = plan(&j, &restarting, true, at(0));
        assert_eq!(condition(&p, "FailureTarget").unwrap().reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(p.delete, 1);
        assert!(plan(&j, &Counts { restarts: 1, ..counts(1, 0, 0) }, true, at(0)).status.conditions.is_none());
    }

    #[test]
    fn the_active_deadline_fails_the_job_and_is_waited_for() {
        let j = job(json!({"completions": 1, "activeDeadlineSeconds": 30}), json!({"startTime": time(0)}));
        let p = plan(&j, &counts(1, 0, 0), true, at(10));
        assert_eq!(p.requeue, Some(Duration::from_secs(20)));
        let p = plan(&j, &counts(1, 0, 0), true, at(30));
        let c = condition(&p, "FailureTarget").unwrap();
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("DeadlineExceeded"), Some("Job was active longer than specified deadline"))
        );
        assert_eq!(p.delete, 1);
    }

    #[test]
    fn suspending_stops_the_pods_and_resuming_restarts_the_clock() {
        let j =
            job(json!({"completions": 2, "parallelism": 2, "suspend": true, "activeDeadlineSeconds": 30}), json!({"startTime": time(0)}));
        let p = plan(&j, &counts(2, 0, 0), true, at(100));
        assert_eq!((p.create, p.delete), (0, 2));
        let c = condition(&p, "Suspended").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_deref(), c.message.as_deref()), ("True", Some("JobSuspended"), Some("Job suspended")));
        assert!(condition(&p, "FailureTarget").is_none(), "no deadline while suspended");

        let mut resumed = Job { status: Some(p.status.clone()), ..j.clone() };
        resumed.spec.as_mut().unwrap().suspend = Some(false);
        let p = plan(&resumed, &counts(0, 0, 0), true, at(200));
        let c = condition(&p, "Suspended").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("JobResumed")));
        assert_eq!(c.last_transition_time, Some(Time(at(200))));
        assert_eq!(p.status.start_time, Some(Time(at(200))));
        assert_eq!(p.create, 2);
        assert_eq!(p.requeue, Some(Duration::from_secs(30)), "the deadline counts from the resumption");

        // A Job created suspended has no clock until it runs.
        let p = plan(&job(json!({"suspend": true}), json!({})), &counts(0, 0, 0), true, at(0));
        assert_eq!(p.status.start_time, None);
        assert_eq!(p.create, 0);
    }

    #[test]
    fn failed_pods_are_replaced_after_a_growing_back_off() {
        let j = job(json!({"completions": 1, "backoffLimit": 6}), json!({"startTime": time(0)}));
        let one = Counts { failures_since_success: 1, last_failure: Some(at(10)), ..counts(0, 0, 1) };
        let p = plan(&j, &one, true, at(15));
        assert_eq!((p.create, p.requeue), (0, Some(Duration::from_secs(5))));
        assert_eq!(plan(&j, &one, true, at(20)).create, 1);
        let three = Counts { failures_since_success: 3, last_failure: Some(at(10)), ..counts(0, 0, 3) };
        assert_eq!(plan(&j, &three, true, at(20)).requeue, Some(Duration::from_secs(30)), "10 s doubled twice");
        let many = Counts { failures_since_success: 30, last_failure: Some(at(0)), ..Default::default() };
        assert_eq!(backoff_remaining(&many, at(0)), MAX_POD_FAILURE_BACKOFF);
    }

    #[test]
    fn counters_never_go_down() {
        let j = job(json!({"completions": 5}), json!({"startTime": time(0), "succeeded": 3, "failed": 1}));
        let p = plan(&j, &counts(0, 1, 0), true, at(1));
        assert_eq!((p.status.succeeded, p.status.failed), (Some(3), Some(1)));
    }

    #[test]
    fn a_finished_job_lives_for_its_ttl_then_goes() {
        let done = json!({
            "startTime": time(0), "completionTime": time(10), "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": time(10)}],
        });
        let j = job(json!({"completions": 1, "ttlSecondsAfterFinished": 60}), done.clone());
        let p = plan(&j, &counts(0, 0, 0), true, at(40));
        assert_eq!((p.delete_job, p.requeue, p.create), (false, Some(Duration::from_secs(30)), 0));
        assert_eq!(Some(&p.status), j.status.as_ref(), "a finished job's status stays");
        assert!(plan(&j, &counts(0, 0, 0), true, at(70)).delete_job);
        let kept = job(json!({"completions": 1}), done);
        let p = plan(&kept, &counts(0, 0, 0), true, at(1_000_000));
        assert_eq!((p.delete_job, p.requeue), (false, None));
        // Finishing sets up the wait.
        let j = job(json!({"completions": 1, "ttlSecondsAfterFinished": 1}), json!({"startTime": time(0)}));
        assert_eq!(plan(&j, &counts(0, 1, 0), true, at(5)).requeue, Some(Duration::from_secs(1)));
    }

    #[test]
    fn the_plan_is_stable_once_written() {
        let j = job(json!({"completions": 3, "parallelism": 2}), json!({}));
        let p = plan(&j, &counts(0, 0, 0), true, at(0));
        let written = Job { status: Some(p.status.clone()), ..j };
        let again = plan(&written, &counts(2, 0, 0), true, at(3));
        assert_eq!(Some(&again.status), written.status.as_ref());
        assert_eq!((again.create, again.delete), (0, 0));
    }

    #[test]
    fn pods_are_counted_from_their_phases() {
        let pod = |phase: &str, status: serde_json::Value, deleted: bool| -> Arc<Pod> {
            let mut status = status;
            status["phase"] = json!(phase);
            let mut meta = json!({"name": "p", "creationTimestamp": time(0)});
            if deleted {
                meta["deletionTimestamp"] = json!(time(40));
            }
            Arc::new(serde_json::from_value(json!({"metadata": meta, "status": status})).unwrap())
        };
        let exited = |secs: i64, code: i32| {
            json!({"containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "finishedAt": time(secs)}}}]})
        };
        let running = json!({
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": true, "restartCount": 2}],
        });
        let pods = vec![
            pod("Failed", exited(5, 1), false),
            pod("Succeeded", exited(10, 0), false),
            pod("Failed", exited(20, 1), false),
            pod("Failed", exited(30, 1), false),
            pod("Running", running, false),
            pod("Pending", json!({}), false),
            pod("Running", json!({}), true),
        ];
        let c = Counts::of(&pods);
        assert_eq!(
            c,
            Counts {
                active: 2,
                ready: 1,
                terminating: 1,
                succeeded: 1,
                failed: 3,
                restarts: 2,
                failures_since_success: 2,
                last_failure: Some(at(30)),
            }
        );
    }

    #[test]
    fn pods_carry_the_template_the_job_labels_and_a_controller_reference() {
        let mut j = job(json!({"completions": 1}), json!({}));
        j.spec.as_mut().unwrap().template.metadata =
            Some(ObjectMeta { labels: Some([("app".to_string(), "pi".to_string())].into()), ..Default::default() });
        let p = pod_for(&j);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let labels = p.metadata.labels.unwrap();
        for (k, v) in [
            ("app", "pi"),
            (CONTROLLER_UID_LABEL, "u-1"),
            (LEGACY_CONTROLLER_UID_LABEL, "u-1"),
            (JOB_NAME_LABEL, "pi"),
            (LEGACY_JOB_NAME_LABEL, "pi"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        let owner = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.api_version.as_str(), owner.uid.as_str(), owner.controller),
            ("Job", "batch/v1", "u-1", Some(true))
        );
        assert_eq!(p.spec.unwrap().restart_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn conditions_change_as_kubernetes_changes_them() {
        let mut cs = Vec::new();
        assert!(!set_condition(&mut cs, "Suspended", "False", "JobResumed", "Job resumed", &Time(at(0))), "False is not added");
        assert!(cs.is_empty());
        assert!(set_condition(&mut cs, "Suspended", "True", "JobSuspended", "Job suspended", &Time(at(1))));
        assert!(!set_condition(&mut cs, "Suspended", "True", "JobSuspended", "Job suspended", &Time(at(2))));
        assert_eq!(cs[0].last_transition_time, Some(Time(at(1))));
        assert!(set_condition(&mut cs, "Suspended", "False", "JobResumed", "Job resumed", &Time(at(3))));
        assert_eq!((cs.len(), cs[0].last_transition_time.clone()), (1, Some(Time(at(3)))));
    }
}
