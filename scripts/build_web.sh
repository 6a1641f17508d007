#!/usr/bin/env bash
# Builds the npm package in web/: the crate for wasm32 (without the embedded model), the
# wasm-bindgen glue (the CLI version must equal the wasm-bindgen version in Cargo.lock), then
# wasm-opt from npm's binaryen (`npm ci` at the repository root installs it). Without wasm-opt it
# stops, unless `--no-opt` asks for the larger, unoptimised wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
opt=1
if [ "${1:-}" = "--no-opt" ]; then opt=0; fi
if [ $opt = 1 ] && [ ! -x node_modules/.bin/wasm-opt ]; then
    echo "node_modules/.bin/wasm-opt is missing: run \`npm ci\` at the repository root first (it installs binaryen's wasm-opt), or pass --no-opt for an unoptimised build" >&2
    exit 1
fi
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | tail -1 | cut -d'"' -f2)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "wasm-bindgen CLI $want is needed (found: ${have:-none}): cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
cargo build --profile wasm-release --lib --target wasm32-unknown-unknown --no-default-features
rm -rf web/pkg
wasm-bindgen --target web --out-dir web/pkg --out-name tessera target/wasm32-unknown-unknown/wasm-release/tessera.wasm
if [ $opt = 1 ]; then
    node_modules/.bin/wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
        web/pkg/tessera_bg.wasm -o web/pkg/tessera_bg.wasm.opt
    mv web/pkg/tessera_bg.wasm.opt web/pkg/tessera_bg.wasm
fi
raw=$(stat -c %s web/pkg/tessera_bg.wasm)
gz=$(gzip -9 -c web/pkg/tessera_bg.wasm | wc -c)
echo "web/pkg/tessera_bg.wasm: $raw bytes, $gz gzipped"
# The text build (`tessera-vit/text`): the same engine with the text towers' tokenizer (CLIP).
cargo build --profile wasm-release --lib --target wasm32-unknown-unknown --no-default-features --features text
rm -rf web/pkg-text
wasm-bindgen --target web --out-dir web/pkg-text --out-name tessera_text target/wasm32-unknown-unknown/wasm-release/tessera.wasm
if [ $opt = 1 ]; then
    node_modules/.bin/wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
        web/pkg-text/tessera_text_bg.wasm -o web/pkg-text/tessera_text_bg.wasm.opt
    mv web/pkg-text/tessera_text_bg.wasm.opt web/pkg-text/tessera_text_bg.wasm
fi
raw=$(stat -c %s web/pkg-text/tessera_text_bg.wasm)
gz=$(gzip -9 -c web/pkg-text/tessera_text_bg.wasm | wc -c)
echo "web/pkg-text/tessera_text_bg.wasm: $raw bytes, $gz gzipped"
