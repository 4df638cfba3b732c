#!/usr/bin/env bash
# Fuzzes the attestation document parser for SECONDS (default 300), corpus seeded from the real
# Nitro documents. Needs the nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
corpus=fuzz/corpus/nitro_document
mkdir -p "$corpus"
for f in crates/tee/tests/fixtures/nitro/*; do
  case "$f" in
    *.bin) cp "$f" "$corpus/" ;;
    *.hex) xxd -r -p "$f" > "$corpus/$(basename "$f" .hex).bin" ;;
  esac
done
cd fuzz
cargo +nightly fuzz run nitro_document "corpus/nitro_document" -- \
  -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=64 -max_len=16384
