#!/usr/bin/env bash
# Builds the npm package in web/: the crate for wasm32 (without the embedded model), the
# wasm-bindgen glue (the CLI version must equal the wasm-bindgen version in Cargo.lock), then
# wasm-opt from npm's binaryen (`npm ci` at the repository root installs it). Without wasm-opt it
# stops, unless `--no-opt` asks for the larger, unoptimised wasm.
#
# Each of the two packages (web/pkg: the main build; web/pkg-text: with the text towers) gets two
# wasm files from the same sources: simd128 (every browser with WebAssembly SIMD) and, beside it,
# the relaxed-SIMD build (`+relaxed-simd`: fused multiply-adds in the kernels), which the package
# loads where the browser validates relaxed SIMD. Both run under the same wasm-bindgen glue: the
# script checks that the glue of the relaxed build is the same file.
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

# build OUT_DIR OUT_NAME [cargo features...]: both wasm files of one package.
build() {
    local out=$1 name=$2
    shift 2
    cargo build --profile wasm-release --lib --target wasm32-unknown-unknown --no-default-features "$@"
    rm -rf "$out"
    wasm-bindgen --target web --out-dir "$out" --out-name "$name" target/wasm32-unknown-unknown/wasm-release/tessera.wasm
    # The relaxed build in its own target folder (other flags: its own cache).
    RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
        cargo build --profile wasm-release --lib --target wasm32-unknown-unknown --no-default-features --target-dir target/relaxed "$@"
    local tmp
    tmp=$(mktemp -d)
    wasm-bindgen --target web --out-dir "$tmp" --out-name "$name" target/relaxed/wasm32-unknown-unknown/wasm-release/tessera.wasm
    if ! cmp -s "$tmp/$name.js" "$out/$name.js"; then
        echo "the relaxed-SIMD build's wasm-bindgen glue differs from the simd128 build's: they cannot share $out/$name.js" >&2
        exit 1
    fi
    mv "$tmp/${name}_bg.wasm" "$out/${name}_relaxed_bg.wasm"
    rm -rf "$tmp"
    for wasm in "$out/${name}_bg.wasm" "$out/${name}_relaxed_bg.wasm"; do
        if [ $opt = 1 ]; then
            local relaxed=()
            if [[ $wasm == *_relaxed_bg.wasm ]]; then relaxed=(--enable-relaxed-simd); fi
            node_modules/.bin/wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
                --enable-simd "${relaxed[@]}" "$wasm" -o "$wasm.opt"
            mv "$wasm.opt" "$wasm"
        fi
        echo "$wasm: $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped"
    done
}

build web/pkg tessera
# The text build (`tessera-vit/text`): the same engine with the text towers' tokenizer (CLIP).
build web/pkg-text tessera_text --features text
