#!/usr/bin/env bash
# Scheduler and workload-controller benchmark of `daas server` on this machine: N hollow
# (SIMULATED) nodes and one Deployment of R replicas, timed until every pod is bound, on a
# fresh server each run (`daas bench k8s schedule`). Prints Markdown with the median of the runs.
#
# Usage: scripts/bench-sched.sh [--quick]      (--quick: 10 nodes, 500 replicas, one run)
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=50; REPLICAS=5000; RUNS=3
[[ "${1:-}" == "--quick" ]] && { NODES=10; REPLICAS=500; RUNS=1; }

cargo build --release -q -p daas
DAAS=target/release/daas
WORK=$(mktemp -d)
PORT=26653
PID=""
cleanup() { [[ -n "$PID" ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/data"
  "$DAAS" server --data-dir "$WORK/data" --etcd-listen 127.0.0.1:0 --https-listen "127.0.0.1:$PORT" \
    --log-level warn >>"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 1000); do
    [[ $(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "https://127.0.0.1:$PORT/readyz" || true) == 200 ]] && break
    sleep 0.01
  done
  "$DAAS" bench k8s schedule --json --kubeconfig "$WORK/data/admin.kubeconfig" --nodes $NODES --replicas $REPLICAS \
    --timeout 120 >>"$WORK/runs"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done

python3 - "$WORK/runs" "$NODES" "$REPLICAS" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda k: statistics.median(r[k] for r in runs)
print(f"| {sys.argv[3]} replicas on {sys.argv[2]} hollow nodes, median of {len(runs)} | target | result |")
print("|---|---|---:|")
print(f"| every pod created (Deployment → ReplicaSet → pods) | | {med('all_created_s'):.2f} s |")
print(f"| every pod bound | ≤ 10 s | {med('all_bound_s'):.2f} s |")
print(f"| scheduler throughput while binding | ≥ 500 pods/s | {med('bind_rate_per_s'):.0f} pods/s |")
print("runs:", ", ".join(f"{r['all_bound_s']:.2f} s / {r['bind_rate_per_s']:.0f} pods/s" for r in runs))
PY
