#!/usr/bin/env bash
# The whole test suite. Installs what the tests drive when missing (Debian's etcd-client for
# etcdctl, etcd-server for the reference etcd, kubernetes-client if no kubectl is on the PATH,
# containerd, runc and busybox-static for the containerd runtime's suite,
# the Python kubernetes client from PyPI, Mysten's TypeScript SDK and Move parser from npm),
# then checks formatting and lints (clippy, warnings as errors) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v kubectl >/dev/null || need_apt+=(kubernetes-client)
command -v etcd >/dev/null || need_apt+=(etcd-server)
# The containerd runtime's suite starts its own containerd (it skips, saying why, where
# containerd cannot run); its images hold a static busybox.
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]} (Debian packages) for the tests" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The official Python client (PyPI) for the client-library suite.
if ! python3 -c "import kubernetes" 2>/dev/null; then
  echo "installing the Python kubernetes client (pip) for the tests" >&2
  # An externally managed (Debian) Python refuses plain pip installs; then say so explicitly.
  python3 -m pip install -q kubernetes 2>/dev/null || python3 -m pip install -q --break-system-packages kubernetes >&2
  python3 -c "import kubernetes"
fi
# Mysten's TypeScript SDK (npm, pinned by crates/chain/tests/ts/package-lock.json) for the
# cross-implementation signature tests, and prettier with Mysten's Move plugin, whose parser
# checks contracts/ (no Move compiler can be installed here).
if [[ ! -d crates/chain/tests/ts/node_modules/@mysten/sui || ! -d crates/chain/tests/ts/node_modules/@mysten/prettier-plugin-move ]]; then
  echo "installing @mysten/sui, prettier and @mysten/prettier-plugin-move (npm) for the tests" >&2
  (cd crates/chain/tests/ts && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
# Debian's etcd package may start a system etcd on 2379; our tests use their own ports.

cargo fmt --all -- --check
# One feature set for lints and tests (one build): the containerd runtime is compiled in.
cargo clippy --workspace --all-targets --features daas/containerd --quiet -- -D warnings
cargo test --workspace --features daas/containerd --no-fail-fast 2>&1
