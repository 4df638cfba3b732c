#!/usr/bin/env bash
# The agent's benchmarks on this machine: pod start latency (created, already bound → Running)
# for N pods on one agent with the process runtime (or containerd), and the agent's RSS idle and
# with those pods. A fresh server and agent (release builds) per run; prints Markdown, medians
# of the runs.
#
# Usage: scripts/bench-agent.sh [--quick] [--runtime containerd]
#   --quick: 20 pods, one run. --runtime containerd: the containerd runtime, against a private
#   containerd (Debian's containerd and runc, root) with a busybox image made by
#   `daas dev oci-image` from the static busybox (busybox-static).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=100; RUNS=3; RUNTIME=process
while (($#)); do
  case "$1" in
    --quick) COUNT=20; RUNS=1 ;;
    --runtime) RUNTIME=$2; shift ;;
    *) echo "usage: $0 [--quick] [--runtime process|containerd]" >&2; exit 2 ;;
  esac
  shift
done

cargo build --release -q -p daas --features containerd
DAAS=target/release/daas
WORK=$(mktemp -d)
PORT=26655
SPID=""; APID=""; CPID=""
IMAGE=busybox; AGENT_ARGS=()
cleanup() {
  set +e
  [[ -n "$APID" ]] && kill "$APID" 2>/dev/null
  [[ -n "$SPID" ]] && kill "$SPID" 2>/dev/null
  if [[ -n "$CPID" ]]; then
    CTR=(ctr --address "$WORK/ctd/containerd.sock" --namespace k8s.io)
    for t in $("${CTR[@]}" tasks list -q 2>/dev/null); do "${CTR[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
    sleep 0.5
    for c in $("${CTR[@]}" containers list -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$c" >/dev/null 2>&1; "${CTR[@]}" containers delete "$c" >/dev/null 2>&1; done
    kill "$CPID" 2>/dev/null
  fi
  wait 2>/dev/null || true
  grep -o " $WORK[^ ]*" /proc/mounts | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
rss_mib() { awk '$1 == "VmRSS:" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

if [[ "$RUNTIME" == containerd ]]; then
  mkdir -p "$WORK/ctd" "$WORK/images"
  BUSYBOX=/bin/busybox
  "$DAAS" dev oci-image --ref k3s-daas.local/busybox:1 --busybox "$BUSYBOX" --cmd sh --out "$WORK/images/busybox.tar" >/dev/null
  "$DAAS" dev oci-image --ref k3s-daas.local/pause:1 --busybox "$BUSYBOX" --entrypoint /bin/sleep --cmd 2147483647 \
    --out "$WORK/images/pause.tar" >/dev/null
  cat >"$WORK/ctd/config.toml" <<EOF
version = 2
root = "$WORK/ctd/root"
state = "$WORK/ctd/state"
[grpc]
  address = "$WORK/ctd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k3s-daas.local/pause:1"
  restrict_oom_score_adj = true
EOF
  containerd --config "$WORK/ctd/config.toml" >"$WORK/ctd/log" 2>&1 &
  CPID=$!
  for _ in $(seq 1 100); do [[ -S "$WORK/ctd/containerd.sock" ]] && break; sleep 0.1; done
  IMAGE=k3s-daas.local/busybox:1
  AGENT_ARGS=(--runtime containerd --containerd-socket "$WORK/ctd/containerd.sock" --image-dir "$WORK/images")
elif [[ "$RUNTIME" != process ]]; then
  echo "unknown runtime $RUNTIME" >&2; exit 2
fi

for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/data" "$WORK/agent"
  "$DAAS" server --data-dir "$WORK/data" --etcd-listen 127.0.0.1:0 --https-listen "127.0.0.1:$PORT" \
    --log-level warn >>"$WORK/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 1000); do
    [[ $(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "https://127.0.0.1:$PORT/readyz" || true) == 200 ]] && break
    sleep 0.01
  done
  "$DAAS" dev keygen --out "$WORK/key-$i" >/dev/null
  STAKE=$("$DAAS" dev stake --data-dir "$WORK/data" --key "$WORK/key-$i" --node bench-agent --amount 5000)
  "$DAAS" agent --server "https://127.0.0.1:$PORT" --node-name bench-agent --sui-key "$WORK/key-$i" \
    --stake-object "$STAKE" --danger-accept-simulation --data-dir "$WORK/agent" --log-level warn "${AGENT_ARGS[@]}" \
    >>"$WORK/agent.log" 2>&1 &
  APID=$!
  export KUBECONFIG="$WORK/data/admin.kubeconfig"
  for _ in $(seq 1 600); do kubectl get node bench-agent >/dev/null 2>&1 && break; sleep 0.1; done
  kubectl wait --for=condition=Ready node/bench-agent --timeout=60s >/dev/null
  sleep 10
  IDLE=$(rss_mib "$APID")
  "$DAAS" bench k8s podstart --json --kubeconfig "$KUBECONFIG" --node bench-agent --count $COUNT --timeout 120 --image "$IMAGE" \
    | python3 -c "import json,sys; r=json.load(sys.stdin); r['idle_rss_mib']=$IDLE; r['busy_rss_mib']=float('$(rss_mib "$APID")'); print(json.dumps(r))" >>"$WORK/runs"
  kill "$APID"; wait "$APID" 2>/dev/null || true; APID=""
  if [[ -n "$CPID" ]]; then
    LEFT=$(ctr --address "$WORK/ctd/containerd.sock" --namespace k8s.io containers list -q | wc -l)
    ((LEFT == 0)) || echo "warning: $LEFT containers left in containerd after the agent stopped" >&2
  fi
  kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""
done

python3 - "$WORK/runs" "$COUNT" "$RUNTIME" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda k: statistics.median(r[k] for r in runs)
print(f"| {sys.argv[2]} pods on one agent ({sys.argv[3]} runtime), median of {len(runs)} | target | result |")
print("|---|---|---:|")
print(f"| pod start, created (bound) → Running, p50 / p99 | p99 ≤ 1 s | {med('p50_ms'):.0f} / {med('p99_ms'):.0f} ms |")
print(f"| agent RSS, idle | ≤ 30 MiB | {med('idle_rss_mib'):.1f} MiB |")
print(f"| agent RSS after the pods ran and were deleted | | {med('busy_rss_mib'):.1f} MiB |")
print("runs:", ", ".join(f"p99 {r['p99_ms']:.0f} ms, idle {r['idle_rss_mib']:.1f} MiB" for r in runs))
PY
