"""PyTorch side of the GPU comparison: the same shapes and models as `tessera bench`, f32 with
TF32 off, median of timed runs after warm-up (CUDA events). Prints JSON.

    python3 scripts/gpu_compare.py > torch.json
"""
import json, sys, time

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = "cuda"


def timed(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def wall(fn, iters=20, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "gemm": {}, "attention": {}, "vit": {}}
shapes = [(4096, 4096, 4096), (1024, 1024, 1024)]
for b in (1, 64):
    m = 197 * b
    shapes += [(m, 768, 2304), (m, 768, 768), (m, 768, 3072), (m, 3072, 768)]
for m, k, n in shapes:
    x = torch.randn(m, k, device=dev)
    w = torch.randn(k, n, device=dev)
    ms = timed(lambda: torch.matmul(x, w))
    out["gemm"][f"{m}x{k}x{n}"] = {"ms": ms, "gflops": 2 * m * n * k / ms / 1e6}
for b in (1, 64):
    q, k, v = (torch.randn(b, 12, 197, 64, device=dev) for _ in range(3))
    ms = timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    out["attention"][f"{b}x12x197x64"] = {"ms": ms, "gflops": 4 * b * 12 * 197 * 197 * 64 / ms / 1e6}

from transformers import ViTConfig, ViTForImageClassification
model = ViTForImageClassification(ViTConfig(num_labels=1000, attn_implementation="eager")).to(dev).eval()
for b in (1, 64):
    pixels_cpu = torch.randn(b, 3, 224, 224)

    def run():
        with torch.no_grad():
            return model(pixel_values=pixels_cpu.to(dev)).logits.cpu()

    ms = wall(run)
    out["vit"][f"b{b}"] = {"ms": ms, "ms_per_image": ms / b}
json.dump(out, sys.stdout, indent=1)
