"""SigLIP 2 NaFlex on the CPU: tessera's CPU backend against PyTorch (`Siglip2VisionModel`, eager)
at several patch budgets, same machine, same thread count, same weights, in one sitting.

It writes a transformers checkpoint of the B/16 NaFlex shape (width 768, 12 layers, 12 heads, MLP
3072, a 16 x 16 learned position grid, the attention-pooling head; random weights, seed 0) with a
`Siglip2ImageProcessor` config, then for each budget (default 64, 256, 576) takes the grid a square
image gets (8 x 8, 16 x 16, 24 x 24: tokens = budget), checks that tessera's pooled output matches
PyTorch's on it (`tessera run` on the resized pixel_values against transformers on the same pixels
patchified, with `spatial_shapes` and an all-ones mask), and times both at each batch: median
wall-clock ms per run after warm-up, the best of the alternated rounds (tessera: `tessera bench
--device cpu --max-patches N --json`, the input copy and the readback included; PyTorch: the
forward pass on patches already flattened, what Siglip2ImageProcessor hands it). Prints a markdown
table; `--append FILE` adds it with the machine and date. Needs torch and transformers (a virtual
environment outside the repo):

    python3 scripts/naflex_compare.py --threads 2 [--budgets 64,256,576] [--batches 1,8] [--append BENCHMARKS.md]
"""
import argparse, datetime, json, math, os, subprocess, sys, tempfile

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_compare import TESSERA, clock_ghz, cpu_name, median_ms, speed_ratio  # noqa: E402

PATCH = 16


def make_model(folder):
    torch.manual_seed(0)
    cfg = transformers.Siglip2VisionConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                           intermediate_size=3072, num_patches=256, patch_size=PATCH)
    model = transformers.Siglip2VisionModel(cfg).eval()
    model.save_pretrained(folder, safe_serialization=True)
    proc = {"image_processor_type": "Siglip2ImageProcessor", "do_resize": True, "do_rescale": True,
            "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2,
            "rescale_factor": 1 / 255, "patch_size": PATCH, "max_num_patches": 256}
    json.dump(proc, open(os.path.join(folder, "preprocessor_config.json"), "w"), indent=2)
    return model


def patchify(px):
    """pixel_values (B, 3, H, W) to transformers' NaFlex input (B, N, 16*16*3), patches in row-major
    grid order, each flattened (row, column, channel)."""
    b, c, h, w = px.shape
    gh, gw = h // PATCH, w // PATCH
    x = px.reshape(b, c, gh, PATCH, gw, PATCH).transpose(0, 2, 4, 3, 5, 1)
    return np.ascontiguousarray(x.reshape(b, gh * gw, PATCH * PATCH * c)), (gh, gw)


def torch_inputs(px):
    patches, (gh, gw) = patchify(px)
    b = px.shape[0]
    return dict(pixel_values=torch.from_numpy(patches),
                pixel_attention_mask=torch.ones(b, gh * gw, dtype=torch.long),
                spatial_shapes=torch.tensor([[gh, gw]] * b, dtype=torch.long))


def tessera_pooled(folder, px, threads):
    import safetensors.numpy as stn
    with tempfile.TemporaryDirectory() as d:
        stn.save_file({"pixel_values": np.ascontiguousarray(px)}, os.path.join(d, "px.safetensors"))
        subprocess.run([TESSERA, "run", "--device", "cpu", "--threads", str(threads), "--model", folder,
                        "--pixels", os.path.join(d, "px.safetensors"), "--out", os.path.join(d, "out.safetensors")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return stn.load_file(os.path.join(d, "out.safetensors"))["pooler_output"]


def tessera_ms(folder, budget, batch, threads, iters):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([TESSERA, "bench", "--device", "cpu", "--threads", str(threads), "--model", folder,
                        "--max-patches", str(budget), "--batch", str(batch), "--iters", str(iters), "--json", out.name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.load(open(out.name))["results"][0]["p50_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--budgets", default="64,256,576")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--append")
    args = ap.parse_args()
    if not os.path.exists(TESSERA):
        sys.exit(f"{TESSERA} is missing: cargo build --release")
    torch.set_num_threads(args.threads)
    work = tempfile.mkdtemp(prefix="tessera-naflex-compare-")
    folder = os.path.join(work, "siglip2-b16-naflex")
    model = make_model(folder)
    rng = np.random.default_rng(1)
    rows = []
    for budget in [int(b) for b in args.budgets.split(",")]:
        side = math.isqrt(budget)
        if side * side != budget:
            sys.exit(f"--budgets {budget}: a square image's grid fills only square budgets (64, 256, 576, ...)")
        size = side * PATCH
        check = rng.standard_normal((2, 3, size, size), dtype=np.float32)
        with torch.inference_mode():
            want = model(**torch_inputs(check)).pooler_output.numpy()
        diff = float(np.abs(tessera_pooled(folder, check, args.threads) - want).max())
        for batch in [int(b) for b in args.batches.split(",")]:
            px = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
            inputs = torch_inputs(px)
            t_ms, p_ms = [], []
            for _ in range(args.rounds):
                t_ms.append(tessera_ms(folder, budget, batch, args.threads, args.iters))
                with torch.inference_mode():
                    p_ms.append(median_ms(lambda: model(**inputs).pooler_output, args.iters, 3))
            rows.append((budget, f"{side}x{side}", batch, min(t_ms), min(p_ms), diff))
            print(f"budget {budget} batch {batch}: tessera {min(t_ms):.1f} ms, PyTorch {min(p_ms):.1f} ms", file=sys.stderr, flush=True)
    cpu = cpu_name()
    ghz = clock_ghz()
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} cores" + (f", clock measured at {ghz:.2f} GHz" if ghz else "") +
        f"; {args.threads} threads for both; {datetime.date.today().isoformat()}. PyTorch {torch.__version__} "
        f"(eager, inference mode, transformers {transformers.__version__} `Siglip2VisionModel`), tessera `--device cpu`. "
        f"SigLIP 2 B/16 NaFlex shape, random weights (seed 0); a square image's grid at each budget. Median ms per run "
        f"of {args.iters} after warm-up, the best of {args.rounds} alternated rounds.",
        "",
        "| budget | grid | batch | tessera ms | PyTorch ms | tessera / PyTorch | tessera ms per 100 tokens | max pooled diff vs PyTorch |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for budget, grid, batch, t, p, diff in rows:
        ratio = speed_ratio(t, p)
        lines.append(f"| {budget} | {grid} | {batch} | {t:.1f} | {p:.1f} | {ratio} | {100 * t / (budget * batch):.2f} | {diff:.1e} |")
    table = "\n".join(lines)
    print(table)
    if args.append:
        with open(args.append, "a") as f:
            f.write(f"\n## SigLIP 2 NaFlex on the CPU backend against PyTorch ({datetime.date.today().isoformat()})\n\n{table}\n")


if __name__ == "__main__":
    main()
