#!/usr/bin/env bash
# Kubernetes API benchmarks of `daas server` on this machine, with the repo's load tool
# (`daas bench k8s`): mixed load at a fixed rate, 10,000 pods and their lists, 1,000 watches,
# server memory, and readiness time on an existing data dir. Prints Markdown to stdout.
#
# Usage: scripts/bench-k8s.sh [--quick]
#   --quick  smaller counts and shorter runs (a smoke run; figures are not the targets')
# Every load is bounded in count and time; the server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
if ((QUICK)); then DURATION=5; PODS=1000; WATCHERS=100; EVENTS=20; REPEAT=1; else DURATION=30; PODS=10000; WATCHERS=1000; EVENTS=100; REPEAT=3; fi
RATE=500

cargo build --release -q -p daas
DAAS=target/release/daas
WORK=$(mktemp -d)
PORT=26643
PID=""
cleanup() { [[ -n "$PID" ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Starts the server on $WORK/data; sets PID, and READY_MS to the milliseconds until /readyz
# answered 200.
start() {
  local t0 t1
  t0=$(date +%s%N)
  "$DAAS" server --data-dir "$WORK/data" --etcd-listen 127.0.0.1:0 --https-listen "127.0.0.1:$PORT" \
    --controllers "" --log-level warn >>"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 1000); do
    if [[ $(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "https://127.0.0.1:$PORT/readyz" || true) == 200 ]]; then
      t1=$(date +%s%N); READY_MS=$(((t1 - t0) / 1000000)); return 0
    fi
    sleep 0.01
  done
  echo "the server did not become ready; its log:" >&2; cat "$WORK/server.log" >&2; return 1
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }
rss_mib() { awk -v f="$1" '$1 == f":" {printf "%.0f", $2 / 1024}' "/proc/$PID/status"; }

KC="$WORK/data/admin.kubeconfig"
start; FRESH_MS=$READY_MS
for i in $(seq 1 "$REPEAT"); do
  "$DAAS" bench k8s mixed --json --kubeconfig "$KC" --namespace "load-$i" --rate $RATE --duration $DURATION \
    --clients 32 --conns 4 --watchers 8 >>"$WORK/mixed"
done
"$DAAS" bench k8s pods --json --kubeconfig "$KC" --namespace pods --count $PODS --clients 32 --lists 0 >"$WORK/create"
RSS_PODS=$(rss_mib VmRSS)
"$DAAS" bench k8s pods --json --kubeconfig "$KC" --namespace pods --count 0 --lists 5 >"$WORK/pods"
RSS_LISTS=$(rss_mib VmRSS)
sleep 15 # the allocator's decay time (10 s) and some
RSS_IDLE=$(rss_mib VmRSS)
"$DAAS" bench k8s watch --json --kubeconfig "$KC" --namespace watch --watchers $WATCHERS --conns 10 \
  --events $EVENTS --rate 50 >"$WORK/watch"
RSS_AFTER=$(rss_mib VmRSS); HWM=$(rss_mib VmHWM)
stop
READY=()
for _ in 1 2 3; do start; READY+=("$READY_MS"); stop; done

python3 - "$WORK" "$(nproc)" "$FRESH_MS" "$RSS_PODS" "$RSS_LISTS" "$RSS_IDLE" "$RSS_AFTER" "$HWM" "${READY[@]}" <<'PY'
import json, sys, datetime, statistics
work, cores, fresh, rss_pods, rss_lists, rss_idle, rss_after, hwm, *ready = sys.argv[1:]
create = json.load(open(f"{work}/create"))
mixed = [json.loads(l) for l in open(f"{work}/mixed")]
pods = json.load(open(f"{work}/pods"))
watch = json.load(open(f"{work}/watch"))
med = lambda k: statistics.median(m[k] for m in mixed)
ready = sorted(int(r) for r in ready)
print(f"{datetime.date.today()} · {cores} cores · release build · server and load tool on one machine · "
      f"mixed load: median of {len(mixed)} runs of {mixed[0]['requests']} requests\n")
print("| measure | target | result |")
print("|---|---|---:|")
print(f"| mixed load, achieved rate | 500 req/s | {med('req_per_s'):.0f} req/s ({sum(m['errors'] for m in mixed)} errors) |")
print(f"| mutating (create/patch/delete) p50 / p99 | p99 ≤ 25 ms | {med('mutating_p50_ms'):.2f} / {med('mutating_p99_ms'):.2f} ms |")
print(f"| GET one object p50 / p99 | p99 ≤ 5 ms | {med('get_p50_ms'):.2f} / {med('get_p99_ms'):.2f} ms |")
print(f"| list (50 by label) p99 | | {statistics.median(m['by_verb']['list']['p99_ms'] for m in mixed):.2f} ms |")
print(f"| {create['created']} pods created (32 clients) | | {create['created_in_s']:.1f} s, create p50 / p99 {create['create_p50_ms']:.1f} / {create['create_p99_ms']:.1f} ms |")
print(f"| full list of {pods['pods']} pods, JSON ({pods['list_json_bytes']/1e6:.1f} MB) | ≤ 1 s | {pods['list_json_ms']:.0f} ms |")
print(f"| same as Table (kubectl get) | | {pods['list_table_ms']:.0f} ms |")
print(f"| same in Table pages of 500 (kubectl get's chunks) | | {pods['list_paged_500_ms']:.0f} ms |")
print(f"| {watch['watchers']} watches, {watch['events']} events each | every watcher gets every event | "
      f"{watch['watchers_with_every_event']}/{watch['watchers']}; delivery p50 {watch['delivery_p50_ms']:.1f} / p99 {watch['delivery_p99_ms']:.1f} ms |")
print(f"| server RSS with {pods['pods']} pods | ≤ 300 MiB | {rss_pods} MiB; right after the 15 full lists {rss_lists} MiB, 15 s later {rss_idle} MiB; after the watches {rss_after} MiB; peak {hwm} MiB |")
print(f"| ready (readyz 200) after start, fresh data dir | | {fresh} ms |")
print(f"| ready after restart with {pods['pods']} pods (median of 3) | ≤ 1 s | {ready[1]} ms |")
PY
