#!/usr/bin/env bash
# Side-by-side load test: real etcd 3.4 (Debian's etcd-server) and `daas server` on this
# machine, the same load from `daas bench etcd` against each, both durable (fsync per commit),
# both on loopback in their own temporary data dirs. Prints a table (Markdown) to stdout.
#
# Usage: scripts/bench-vs-etcd.sh [--quick]
#   --quick  fewer operations (for CI smoke runs; figures are noisier)
# Every run is bounded (--total operations, --timeout seconds) and every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
if ((QUICK)); then PUTS=5000; RANGES=20000; TXNS=5000; SEQ=300; REPEAT=1; else PUTS=40000; RANGES=100000; TXNS=40000; SEQ=2000; REPEAT=5; fi

if ! command -v etcd >/dev/null; then
  echo "installing etcd-server (Debian) for the reference run" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client) >&2
fi

cargo build --release -q -p daas
DAAS=target/release/daas
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { # host port log
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on $1:$2; its log:" >&2; cat "$3" >&2; return 1
}

start_etcd() {
  rm -rf "$WORK/etcd"
  etcd --name ref --data-dir "$WORK/etcd" \
    --listen-client-urls http://127.0.0.1:23799 --advertise-client-urls http://127.0.0.1:23799 \
    --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
    --initial-cluster ref=http://127.0.0.1:23800 --log-level error >"$WORK/etcd.log" 2>&1 &
  PIDS+=($!); wait_port 127.0.0.1 23799 "$WORK/etcd.log"
}

start_daas() { # extra flags...
  rm -rf "$WORK/daas"
  "$DAAS" server --data-dir "$WORK/daas" --etcd-listen 127.0.0.1:23790 --log-level warn "$@" >"$WORK/daas.log" 2>&1 &
  PIDS+=($!); wait_port 127.0.0.1 23790 "$WORK/daas.log"
}

stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }

# One load; prints its JSON line.
load() { # endpoint op clients conns total
  "$DAAS" bench etcd --json --endpoints "$1" --op "$2" --clients "$3" --conns "$4" --total "$5" \
    --key-size 8 --val-size 256 --key-space 10000 --timeout 300
}

suite() { # name endpoint -> appends one run of every load to $WORK/results
  local name=$1 ep=$2
  load "$ep" put 100 10 3000 >/dev/null # warm-up after the fresh start, not recorded
  {
    echo "$name put-100 $(load "$ep" put 100 10 $PUTS)"
    echo "$name put-1 $(load "$ep" put 1 1 $SEQ)"
    echo "$name range-100 $(load "$ep" range 100 10 $RANGES)"
    echo "$name txn-100 $(load "$ep" txn 100 10 $TXNS)"
  } >>"$WORK/results"
}

# The three servers take turns within each repetition, so drift in the machine's load spreads
# over all of them instead of landing on whichever ran last.
for _ in $(seq 1 "$REPEAT"); do
  start_etcd;  suite etcd http://127.0.0.1:23799;  stop_all
  start_daas;  suite daas http://127.0.0.1:23790;  stop_all
  start_daas --danger-unsealed-storage; suite daas-unsealed http://127.0.0.1:23790; stop_all
done

python3 - "$WORK/results" "$(nproc)" "$REPEAT" <<'PY'
import json, sys, datetime, statistics
runs = {}
for line in open(sys.argv[1]):
    name, load, js = line.split(" ", 2)
    runs.setdefault((name, load), []).append(json.loads(js))
# The median of each figure over the repeated runs (the machine is shared and noisy).
rows = {k: {f: statistics.median(r[f] for r in v) for f in ("ops_per_s", "p50_ms", "p99_ms", "errors")} for k, v in runs.items()}
loads = [("put-100", "put, 100 clients"), ("put-1", "put, 1 client"), ("range-100", "range (1 key), 100 clients"), ("txn-100", "txn (compare+put), 100 clients")]
print(f"{datetime.date.today()} · {sys.argv[2]} cores · 8-byte keys, 256-byte values, 10k key space · both fsync every commit · median of {sys.argv[3]} runs\n")
print("| load | etcd 3.4 ops/s | daas ops/s | ratio | etcd p50 / p99 ms | daas p50 / p99 ms | daas unsealed ops/s | sealing cost |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for key, label in loads:
    e, d, u = rows[("etcd", key)], rows[("daas", key)], rows[("daas-unsealed", key)]
    cost = 1 - d["ops_per_s"] / u["ops_per_s"]
    errs = sum(r["errors"] for r in (e, d, u))
    print(f"| {label} | {e['ops_per_s']:.0f} | {d['ops_per_s']:.0f} | {d['ops_per_s']/e['ops_per_s']:.2f}× | "
          f"{e['p50_ms']:.2f} / {e['p99_ms']:.2f} | {d['p50_ms']:.2f} / {d['p99_ms']:.2f} | {u['ops_per_s']:.0f} | {cost*100:+.1f}% |"
          + (f" ({errs} errors)" if errs else ""))
PY
