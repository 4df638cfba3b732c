#!/usr/bin/env bash
# The agent's benchmarks on this machine: pod start latency (created, already bound → Running)
# for N pods on one agent with the process runtime, and the agent's RSS idle and with those
# pods. A fresh server and agent (release builds) per run; prints Markdown, medians of the runs.
#
# Usage: scripts/bench-agent.sh [--quick]      (--quick: 20 pods, one run)
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=100; RUNS=3
[[ "${1:-}" == "--quick" ]] && { COUNT=20; RUNS=1; }

cargo build --release -q -p daas
DAAS=target/release/daas
WORK=$(mktemp -d)
PORT=26655
SPID=""; APID=""
cleanup() {
  [[ -n "$APID" ]] && kill "$APID" 2>/dev/null
  [[ -n "$SPID" ]] && kill "$SPID" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
rss_mib() { awk '$1 == "VmRSS:" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

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
    --stake-object "$STAKE" --danger-accept-simulation --data-dir "$WORK/agent" --log-level warn >>"$WORK/agent.log" 2>&1 &
  APID=$!
  export KUBECONFIG="$WORK/data/admin.kubeconfig"
  kubectl wait --for=condition=Ready node/bench-agent --timeout=60s >/dev/null
  sleep 10
  IDLE=$(rss_mib "$APID")
  "$DAAS" bench k8s podstart --json --kubeconfig "$KUBECONFIG" --node bench-agent --count $COUNT --timeout 120 \
    | python3 -c "import json,sys; r=json.load(sys.stdin); r['idle_rss_mib']=$IDLE; r['busy_rss_mib']=float('$(rss_mib "$APID")'); print(json.dumps(r))" >>"$WORK/runs"
  kill "$APID"; wait "$APID" 2>/dev/null || true; APID=""
  kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=""
done

python3 - "$WORK/runs" "$COUNT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda k: statistics.median(r[k] for r in runs)
print(f"| {sys.argv[2]} pods on one agent (process runtime), median of {len(runs)} | target | result |")
print("|---|---|---:|")
print(f"| pod start, created (bound) → Running, p50 / p99 | p99 ≤ 1 s | {med('p50_ms'):.0f} / {med('p99_ms'):.0f} ms |")
print(f"| agent RSS, idle | ≤ 30 MiB | {med('idle_rss_mib'):.1f} MiB |")
print(f"| agent RSS after the pods ran and were deleted | | {med('busy_rss_mib'):.1f} MiB |")
print("runs:", ", ".join(f"p99 {r['p99_ms']:.0f} ms, idle {r['idle_rss_mib']:.1f} MiB" for r in runs))
PY
