#!/usr/bin/env bash
# Builds the Nitro enclave image (EIF) reproducibly and prints its PCRs.
# Needs docker (or podman) and nitro-cli on an enclave-enabled EC2 instance (or eif_build).
# Usage: scripts/build-enclave.sh [OUTPUT.eif]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-daas-enclave.eif}"
epoch="$(git log -1 --format=%ct)"
if grep -q REPLACE_WITH_PINNED_DIGEST deploy/nitro/Containerfile; then
  echo "build-enclave: pin the base image digest in deploy/nitro/Containerfile first" >&2
  exit 2
fi
docker build --build-arg SOURCE_DATE_EPOCH="$epoch" -f deploy/nitro/Containerfile -t k3s-daas-enclave:"$(git rev-parse --short HEAD)" .
nitro-cli build-enclave --docker-uri k3s-daas-enclave:"$(git rev-parse --short HEAD)" --output-file "$out" | tee "$out.measurements.json"
echo "PCR0 is the measurement a master's report carries; pin it with: daas attest verify --server URL --expect-pcr0 <PCR0>"
