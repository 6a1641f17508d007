"""The patch-size sweep of the embedded model, tessera's CPU backend beside PyTorch (eager) on the
same machine and thread count: at each patch size the Fashion-MNIST test accuracy, images/s in
batches of 64 and single-image latency (median), alternated round by round, best of the rounds.

PyTorch runs a transformers ViT of that patch size whose patch kernel was PI-resized from the
embedded checkpoint's by scripts/flexi.py (as scripts/make_flexi_fixtures.py builds them);
tessera runs `tessera sweep --device cpu --json`. Prints a markdown table; --append FILE adds it
to FILE with the machine and date.

    python3 scripts/sweep_compare.py --threads 2 [--rounds 2] [--append BENCHMARKS.md]
"""
import argparse, datetime, gzip, json, os, platform, subprocess, sys, tempfile, time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_flexi_fixtures import resized_model  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TESSERA = os.path.join(ROOT, "target/release/tessera")
MODEL = os.path.join(ROOT, "models/fashion-vit")
DATA = "/usr/share/datasets/fashion-mnist"


def test_set():
    with gzip.open(f"{DATA}/t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(f"{DATA}/t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - 0.5) / 0.5
    return x[:, None].expand(-1, 3, -1, -1).contiguous(), labels


def pytorch_row(model, x, labels, batch, latency_runs):
    with torch.inference_mode():
        preds = torch.cat([model(interpolate_pos_encoding=True, pixel_values=x[i:i + 500]).logits.argmax(-1) for i in range(0, len(x), 500)]).numpy()
        acc = float((preds == labels).mean())
        g = torch.Generator().manual_seed(7)
        one = torch.randn(1, 3, 28, 28, generator=g)
        many = torch.randn(batch, 3, 28, 28, generator=g)
        model(interpolate_pos_encoding=True, pixel_values=one)
        lat = []
        for _ in range(latency_runs):
            t = time.perf_counter()
            model(interpolate_pos_encoding=True, pixel_values=one).logits
            lat.append((time.perf_counter() - t) * 1e3)
        model(interpolate_pos_encoding=True, pixel_values=many)
        n, t0 = 0, time.perf_counter()
        while n < 2 * batch or time.perf_counter() - t0 < 1.0:
            model(interpolate_pos_encoding=True, pixel_values=many).logits
            n += batch
        ips = n / (time.perf_counter() - t0)
    return acc, ips, sorted(lat)[len(lat) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--patch-sizes", default="2,4,7,14")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latency-runs", type=int, default=20)
    ap.add_argument("--append")
    args = ap.parse_args()
    if not os.path.exists(TESSERA):
        sys.exit(f"{TESSERA} is missing: cargo build --release")
    torch.set_num_threads(args.threads)
    sizes = [int(p) for p in args.patch_sizes.split(",")]
    models = {p: resized_model(MODEL, p) for p in sizes}
    x, labels = test_set()
    ours = {p: [] for p in sizes}
    theirs = {p: [] for p in sizes}
    for _ in range(args.rounds):
        with tempfile.NamedTemporaryFile(suffix=".svg") as chart:
            out = subprocess.run([TESSERA, "sweep", "--device", "cpu", "--threads", str(args.threads), "--patch-sizes", args.patch_sizes,
                                  "--batch", str(args.batch), "--latency-runs", str(args.latency_runs), "--chart", chart.name, "--json"],
                                 check=True, capture_output=True, text=True)
        for r in json.loads(out.stdout)["results"]:
            ours[r["patch_size"]].append((r["accuracy"], r["images_per_s"], r["latency_ms"]))
        for p in sizes:
            theirs[p].append(pytorch_row(models[p], x, labels, args.batch, args.latency_runs))
    cpu = platform.machine()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    lines = [
        f"Embedded Fashion-MNIST ViT by patch size, {cpu}, {args.threads} threads, {datetime.date.today()}: "
        f"accuracy on the 10,000 test images; images/s in batches of {args.batch} and single-image latency (median of "
        f"{args.latency_runs}) on random inputs, best of {args.rounds} alternated rounds (torch {torch.__version__}).",
        "",
        "| patch | tokens | tessera accuracy | PyTorch accuracy | tessera images/s | PyTorch images/s | tessera latency ms | PyTorch latency ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in sizes:
        acc_t = ours[p][0][0]
        acc_p = theirs[p][0][0]
        ips_t = max(r[1] for r in ours[p])
        ips_p = max(r[1] for r in theirs[p])
        lat_t = min(r[2] for r in ours[p])
        lat_p = min(r[2] for r in theirs[p])
        tokens = 1 + (28 // p) ** 2
        lines.append(f"| {p} | {tokens} | {acc_t * 100:.2f}% | {acc_p * 100:.2f}% | {ips_t:.0f} | {ips_p:.0f} | {lat_t:.2f} | {lat_p:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.append:
        with open(args.append, "a") as f:
            f.write("\n" + table + "\n")


if __name__ == "__main__":
    main()
