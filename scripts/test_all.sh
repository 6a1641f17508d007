#!/usr/bin/env bash
# Every test: the Rust suite (kernels, executor, models, preprocessing, CLI) on the machine's
# adapter, then the browser package and the browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
bash scripts/build_web.sh
node --test --test-concurrency=1 tests/browser/
