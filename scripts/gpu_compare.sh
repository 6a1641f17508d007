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
python3 scripts/gpu_compare.py > "$OUT/torch.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
k = json.load(open(f"{out}/tessera-kernels.json")); v = json.load(open(f"{out}/tessera-vit.json")); t = json.load(open(f"{out}/torch.json"))
print(f"\n{t['device']}, torch {t['torch']}; tessera on {k['adapter']} ({k['backend']})")
print(f"{'work':<34} {'tessera':>12} {'torch':>12} {'ratio':>8}")
for r in k["results"]:
    if r["error"]:
        print(f"{r['case']:<34} {'error':>12}"); continue
    if r["case"].startswith("gemm"):
        ref = t["gemm"].get(r["shape"])
    else:
        ref = t["attention"].get(r["shape"])
    if ref:
        print(f"{r['case'] + ' ' + r['shape']:<34} {r['gflops']:>9.0f} GF {ref['gflops']:>9.0f} GF {r['gflops'] / ref['gflops']:>7.2f}x")
for r in v["results"]:
    ref = t["vit"].get(f"b{r['batch']}")
    if ref:
        print(f"{'ViT-B/16 b=' + str(r['batch']) + ' ms/image (wall)':<34} {r['p50_ms'] / r['batch']:>9.3f} ms {ref['ms_per_image']:>9.3f} ms {ref['ms_per_image'] / (r['p50_ms'] / r['batch']):>7.2f}x")
PY
