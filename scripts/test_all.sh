#!/usr/bin/env bash
# Every test: the Rust suite (kernels, executor, models, preprocessing, CLI) on the machine's
# adapter, then the browser package and the browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
# Mesa's Vulkan device-select layer probes the display when adapters are listed, printing
# "error: XDG_RUNTIME_DIR is invalid" on a headless machine; the CLI turns it off itself, the test
# binaries (which open adapters through the library) here.
export NODEVICE_SELECT="${NODEVICE_SELECT:-1}"
cargo test --release
bash scripts/build_web.sh
node --test --test-concurrency=1 tests/browser/
