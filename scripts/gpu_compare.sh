#!/usr/bin/env bash
# The GPU comparison in one run: tessera (a release binary built beforehand for x86_64) and
# PyTorch on the same shapes and models, then the ratios. Writes JSON files to ${OUT:-.}.
#   cargo build --release && bash scripts/gpu_compare.sh
set -uo pipefail
OUT=${OUT:-.}
BIN=${BIN:-./target/release/tessera}
if ! ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep -qi nvidia \
   && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
"$BIN" info
"$BIN" bench --batch 1,64 --gemm 4096x4096x4096 --iters 20 --max-seconds 3 --json "$OUT/tessera-kernels.json"
"$BIN" bench --model vit-b16 --batch 1,64 --iters 20 --max-seconds 5 --json "$OUT/tessera-vit.json"
# The same with the autotuner (choices cached in $OUT/tuning.json) and with f16 storage.
export TESSERA_TUNE_CACHE="$OUT/tuning.json"
"$BIN" --tune bench --batch 1,64 --gemm 4096x4096x4096 --iters 20 --max-seconds 3 --json "$OUT/tessera-kernels-tuned.json"
"$BIN" --tune bench --model vit-b16 --batch 1,64 --iters 20 --max-seconds 5 --json "$OUT/tessera-vit-tuned.json"
"$BIN" --tune bench --model vit-b16 --f16 --batch 1,64 --iters 20 --max-seconds 5 --json "$OUT/tessera-vit-f16.json"
"$BIN" --tune bench --model vit-b16 --qkv-heads --batch 1,64 --iters 20 --max-seconds 5 --json "$OUT/tessera-vit-heads.json"
# The browser path's cost: shaders keep wgpu's runtime checks (browsers always do), kernels tuned
# under them (their own cache entries), so the loop and unrolled tiles compare as a browser sees them.
TESSERA_CHECKED_SHADERS=1 "$BIN" --tune bench --batch 1,64 --iters 10 --max-seconds 2 --json "$OUT/tessera-kernels-checked.json"
python3 scripts/gpu_compare.py > "$OUT/torch.json"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    path = f"{out}/{name}.json"
    return json.load(open(path)) if os.path.exists(path) else None
t = load("torch")
k = load("tessera-kernels")
print(f"\n{t['device']}, torch {t['torch']}; tessera on {k['adapter']} ({k['backend']})")
print(f"{'work':<44} {'tessera':>12} {'torch':>12} {'ratio':>8}")
for label, doc in [("", k), (" tuned", load("tessera-kernels-tuned")), (" checked, tuned", load("tessera-kernels-checked"))]:
    for r in (doc or {}).get("results", []):
        if r["error"]:
            print(f"{r['case'] + label:<44} {'error':>12}"); continue
        ref = (t["gemm"] if r["case"].startswith("gemm") else t["attention"]).get(r["shape"])
        if ref:
            tile = f" [{r['kernel']}]" if r.get("kernel", "-") != "-" else ""
            print(f"{r['case'] + ' ' + r['shape'] + label + tile:<44} {r['gflops']:>9.0f} GF {ref['gflops']:>9.0f} GF {r['gflops'] / ref['gflops']:>7.2f}x")
own = {}
for label, name in [("", "tessera-vit"), (" tuned", "tessera-vit-tuned"), (" tuned f16", "tessera-vit-f16"), (" tuned qkv-heads", "tessera-vit-heads")]:
    for r in (load(name) or {}).get("results", []):
        ms = r["p50_ms"] / r["batch"]
        own[(label, r["batch"])] = ms
        ref = t["vit"].get(f"b{r['batch']}")
        if ref:
            print(f"{'ViT-B/16 b=' + str(r['batch']) + label + ' ms/image (wall)':<44} {ms:>9.3f} ms {ref['ms_per_image']:>9.3f} ms {ref['ms_per_image'] / ms:>7.2f}x")
        if r.get("gpu_ms_per_run"):
            print(f"{'  GPU time alone (back to back)':<44} {r['gpu_ms_per_run'] / r['batch']:>9.3f} ms")
tuning = load("tuning")
if tuning:
    print("\nautotuner (ms per dispatch of each candidate, chosen first):")
    for key, e in sorted(tuning["entries"].items()):
        shape = key.split(" | ")[-1] + (" [checked shaders]" if " | checked shaders | " in key else "")
        rest = ", ".join(f"{k} {v:.4f}" for k, v in sorted(e["ms"].items(), key=lambda kv: kv[1]))
        print(f"  {shape:<60} {rest}")
for b in (1, 64):
    if ("", b) in own and (" tuned f16", b) in own:
        print(f"ViT-B/16 b={b}: f16 storage (tuned) is {own[('', b)] / own[(' tuned f16', b)]:.2f}x our f32 (untuned), {own.get((' tuned', b), float('nan')) / own[(' tuned f16', b)]:.2f}x our tuned f32")
PY
