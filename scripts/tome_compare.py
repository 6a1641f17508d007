"""PyTorch with ToMe's own timm patch, timed the way the CPU comparisons are: DeiT-S/16 at 224
(random weights), batch 1 and 8, r = 0 and r = 13, on as many threads as tessera uses.

    TOME=/path/to/ToMe python scripts/tome_compare.py --threads 2
"""
import argparse, os, sys, time

import torch
import timm

sys.path.insert(0, os.environ.get("TOME", "/work/tome"))
from tome.patch.timm import apply_patch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--r", type=int, nargs="+", default=[0, 13])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    apply_patch(model)
    for b in args.batch:
        x = torch.randn(b, 3, 224, 224)
        for r in args.r:
            model.r = r
            with torch.inference_mode():
                for _ in range(2):
                    model(x)
                times = []
                for _ in range(args.iters):
                    t = time.perf_counter()
                    model(x)
                    times.append((time.perf_counter() - t) * 1e3)
            times.sort()
            print(f"pytorch+tome deit-s b{b} r={r}: median {times[len(times) // 2]:.1f} ms ({b / times[len(times) // 2] * 1e3:.1f} images/s), {args.threads} threads")


if __name__ == "__main__":
    main()
