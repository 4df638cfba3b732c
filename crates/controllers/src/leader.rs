//! Leader election on a coordination.k8s.io Lease, as kube-controller-manager and
//! kube-scheduler do it: the holder renews `spec.renewTime` every `renew` period; a candidate
//! takes the lease over only when it has not been renewed for `leaseDurationSeconds`. Every
//! write is a compare-and-swap on the resourceVersion, so two candidates never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

/// One lease and who we are.
#[derive(Clone, Debug)]
pub struct LeaseLock {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseLock {
    /// Takes or renews the lease; true while we hold it. Conflicts mean someone else won the
    /// race: false, not an error.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let secs = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let current = self.api.get_opt(&self.name).await?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !ours {
            let held_for = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(secs).max(1)).unwrap_or(15));
            let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
            let expired = renewed.checked_add(held_for).map(|until| until < now.0).unwrap_or(true);
            // An empty holder means the last leader released it.
            let released = spec.holder_identity.as_deref().unwrap_or("").is_empty();
            if !expired && !released {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(secs);
        spec.renew_time = Some(now);
        conflict_is_false(self.api.replace(&self.name, &PostParams::default(), &lease).await)
    }

    /// Gives the lease up (on shutdown), so a successor need not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = Some(String::new());
            let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        }
    }
}

fn conflict_is_false<T>(r: Result<T, kube::Error>) -> Result<bool, kube::Error> {
    match r {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs `work` while this process holds `lock`, and stops it when leadership is lost or `stop`
/// turns true. `work` is started afresh on every new term.
pub async fn run_elected<F, Fut>(lock: LeaseLock, renew: Duration, mut stop: tokio::sync::watch::Receiver<bool>, work: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    let mut renewed_at: Option<std::time::Instant> = None;
    loop {
        let leader = match lock.try_acquire_or_renew().await {
            Ok(true) => {
                renewed_at = Some(std::time::Instant::now());
                true
            }
            Ok(false) => false,
            // The API did not answer: a leader keeps leading until its renew deadline (two
            // thirds of the lease), so a blip does not stop every controller.
            Err(e) => {
                tracing::warn!(lease = %lock.name, error = %e, "leader election: the lease cannot be read or written");
                running.is_some() && renewed_at.is_some_and(|t| t.elapsed() < lock.duration * 2 / 3)
            }
        };
        match (leader, running.is_some()) {
            (true, false) => {
                tracing::info!(lease = %lock.name, identity = %lock.identity, "became leader");
                running = Some(tokio::spawn(work()));
            }
            (false, true) => {
                tracing::warn!(lease = %lock.name, "lost the lease; stopping");
                if let Some(t) = running.take() {
                    t.abort();
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(renew) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            if let Some(t) = running.take() {
                t.abort();
                lock.release().await;
            }
            return;
        }
    }
}
