//! The tunnel's view of the pods: `kubectl logs` and `kubectl exec` by namespace and name,
//! answered by the [`PodManager`].

use futures::StreamExt as _;
use futures::future::BoxFuture;

use crate::pods::{PodError, PodManager};
use crate::tunnel::{ExecResult, LogLines, LogQuery, PodIo, TunnelError};

fn tunnel_error(e: PodError) -> TunnelError {
    match e {
        PodError::PodNotFound(_) | PodError::ContainerNotFound { .. } => TunnelError::NotFound(e.to_string()),
        PodError::ContainerWaiting { .. } | PodError::NoPrevious { .. } => TunnelError::BadRequest(e.to_string()),
        other => TunnelError::Internal(other.to_string()),
    }
}

impl PodIo for PodManager {
    fn logs(&self, namespace: &str, pod: &str, query: LogQuery) -> BoxFuture<'_, Result<LogLines, TunnelError>> {
        let (namespace, pod) = (namespace.to_string(), pod.to_string());
        Box::pin(async move {
            let uid =
                self.uid_of(&namespace, &pod).ok_or_else(|| TunnelError::NotFound(format!("pod {namespace}/{pod} is not on this node")))?;
            let since_time = match query.since_time.as_deref() {
                Some(t) => Some(t.parse().map_err(|e| TunnelError::BadRequest(format!("sinceTime {t:?}: {e}")))?),
                None => None,
            };
            let opts = crate::logs::LogOptions {
                follow: query.follow,
                previous: query.previous,
                timestamps: query.timestamps,
                tail_lines: query.tail_lines,
                since_seconds: query.since_seconds,
                since_time,
                limit_bytes: query.limit_bytes,
            };
            let stream = self.logs(&uid, query.container.as_deref().unwrap_or(""), opts).await.map_err(tunnel_error)?;
            Ok(stream.map(|r| r.map(bytes::Bytes::from).map_err(|e| e.to_string())).boxed())
        })
    }

    fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> BoxFuture<'_, Result<ExecResult, TunnelError>> {
        let (namespace, pod, container) = (namespace.to_string(), pod.to_string(), container.unwrap_or("").to_string());
        Box::pin(async move {
            let uid =
                self.uid_of(&namespace, &pod).ok_or_else(|| TunnelError::NotFound(format!("pod {namespace}/{pod} is not on this node")))?;
            let out = self.exec(&uid, &container, command, stdin).await.map_err(tunnel_error)?;
            Ok(ExecResult { stdout: out.stdout, stderr: out.stderr, exit_code: out.exit_code })
        })
    }
}
