"""The CPU comparison: tessera's CPU backend against PyTorch (eager) and ONNX Runtime on the same
machine, same thread count, same weights, in one sitting, the engines alternated round by round.

For each model (DeiT-Ti/16, DeiT-S/16, ViT-B/16 at 224, and on request SigLIP-B/16's image tower at 224
or SigLIP 2's fixed-resolution B/16 at 256 (siglip2-b16-256)
with a classifier, random weights from a fixed seed) it
writes a transformers checkpoint folder, exports it to ONNX (opset 18), checks that tessera's
logits match PyTorch's (max difference), then times each batch (default 1, 8 and 32): median
wall-clock ms per run after warm-up (tessera: `tessera bench --device cpu --json`, which includes
the input copy and the logits readback). With `--isas avx512,avx2` tessera runs once per
instruction set (`TESSERA_CPU_ISA`; ONNX Runtime and PyTorch pick their own kernels). With
`--int8` it also times the int8 forms: the checkpoint quantized by `tessera quantize --bits 8`
run with `--int8` (int8 arithmetic), against ONNX Runtime's dynamically quantized model
(`quantize_dynamic`, int8 weights per channel, what transformers.js ships as "q8"), with both
int8 models' logits against PyTorch's. Prints a markdown table; `--append FILE` adds it to FILE
with the machine (model name, measured clock) and date. Needs torch, transformers, onnxruntime,
onnx (a virtual environment outside the repo):

    python3 scripts/cpu_compare.py --threads 2 [--models deit-ti16,deit-s16,vit-b16] [--batches 1,8,32] [--isas avx512,avx2] [--int8] [--append BENCHMARKS.md] [--keep DIR]
"""
import argparse, datetime, json, os, platform, subprocess, sys, tempfile, time

import numpy as np
import onnxruntime as ort
import torch
import transformers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TESSERA = os.path.join(ROOT, "target/release/tessera")
SPECS = {
    # name: (model class, hidden, heads[, image size])
    "deit-ti16": ("deit", 192, 3),
    "deit-s16": ("deit", 384, 6),
    "vit-b16": ("vit", 768, 12),
    # SiglipForImageClassification: tanh GELU, no class token, the attention-pooling head.
    "siglip-b16": ("siglip", 768, 12),
    # SigLIP 2's fixed-resolution B/16 at 256 pixels (model_type "siglip"): 256 tokens.
    "siglip2-b16-256": ("siglip", 768, 12, 256),
}


def image_size(name):
    return SPECS[name][3] if len(SPECS[name]) > 3 else 224


def make_model(name, folder):
    kind, d, heads = SPECS[name][:3]
    common = dict(hidden_size=d, num_hidden_layers=12, num_attention_heads=heads, intermediate_size=4 * d,
                  image_size=image_size(name), patch_size=16, num_labels=1000, qkv_bias=True)
    torch.manual_seed(0)
    if kind == "siglip":
        vision = {k: v for k, v in common.items() if k not in ("num_labels", "qkv_bias")}
        model = transformers.SiglipForImageClassification(transformers.SiglipConfig(vision_config=vision, num_labels=1000))
    elif kind == "vit":
        model = transformers.ViTForImageClassification(transformers.ViTConfig(**common))
    else:
        model = transformers.DeiTForImageClassification(transformers.DeiTConfig(**common))
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    return model


def median_ms(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def env_for(isa):
    env = dict(os.environ)
    if isa:
        env["TESSERA_CPU_ISA"] = isa
    return env


def tessera_ms(folder, batch, threads, iters, isa=None, int8=False):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [TESSERA, "bench", "--device", "cpu", "--threads", str(threads), "--model", folder,
               "--batch", str(batch), "--iters", str(iters), "--json", out.name] + (["--int8"] if int8 else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_for(isa))
        doc = json.load(open(out.name))
    return doc["results"][0]["p50_ms"]


def tessera_logits(folder, pixels, threads, int8=False):
    with tempfile.TemporaryDirectory() as d:
        import safetensors.numpy as stn
        stn.save_file({"pixel_values": np.ascontiguousarray(pixels)}, os.path.join(d, "px.safetensors"))
        subprocess.run([TESSERA, "run", "--device", "cpu", "--threads", str(threads), "--model", folder,
                        "--pixels", os.path.join(d, "px.safetensors"), "--out", os.path.join(d, "out.safetensors")]
                       + (["--int8"] if int8 else []),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return stn.load_file(os.path.join(d, "out.safetensors"))["logits"]


def speed_ratio(t, other):
    """tessera's time `t` against another engine's, as the tables say it."""
    return f"{other / t:.2f}x faster" if t < other else f"{t / other:.2f}x slower"


def cpu_name():
    """The CPU's model name (/proc/cpuinfo), else what Python knows of the machine."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def clock_ghz():
    """The core clock, measured: a chain of dependent 64-bit multiplies (3 cycles each on every
    x86-64 core since Sandy Bridge and Zen) timed in C. None where no C compiler or not x86-64."""
    src = r"""
#include <stdio.h>
#include <time.h>
#include <stdint.h>
int main(void) { struct timespec a, b; uint64_t n = 300000000ULL, x = 3;
  clock_gettime(CLOCK_MONOTONIC, &a);
  __asm__ volatile("mov %1, %%rcx\n1:\nimul %0, %0\nimul %0, %0\nimul %0, %0\nimul %0, %0\nsub $4, %%rcx\njnz 1b\n" : "+r"(x) : "r"(n) : "rcx");
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("%f\n", 3.0 * n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / 1e9); return (int)(x & 0); }
"""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory() as d:
        try:
            open(os.path.join(d, "c.c"), "w").write(src)
            subprocess.run(["cc", "-O2", "-o", os.path.join(d, "c"), os.path.join(d, "c.c")], check=True, capture_output=True)
            return max(float(subprocess.run([os.path.join(d, "c")], capture_output=True, text=True, check=True).stdout) for _ in range(3))
        except (OSError, subprocess.CalledProcessError, ValueError):
            return None


def eval_compare(threads, rounds):
    """The README's first command against PyTorch evaluating the same weights: the 10,000
    Fashion-MNIST test images (the embedded model, batches of 500, preprocessing included on both
    sides), best of `rounds` alternated. Returns (tessera s, tessera correct, PyTorch s, PyTorch correct)."""
    import gzip
    data = "/usr/share/datasets/fashion-mnist"
    with gzip.open(f"{data}/t10k-images-idx3-ubyte.gz") as f:
        raw = f.read()
    with gzip.open(f"{data}/t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    model = transformers.ViTForImageClassification.from_pretrained(os.path.join(ROOT, "models/fashion-vit")).eval()
    best_t = best_p = float("inf")
    correct_t = correct_p = 0
    for _ in range(rounds):
        t = time.perf_counter()
        out = subprocess.run([TESSERA, "eval", "--device", "cpu", "--threads", str(threads), "--json"], check=True, capture_output=True, text=True)
        best_t = min(best_t, time.perf_counter() - t)
        correct_t = json.loads(out.stdout)["correct"]
        t = time.perf_counter()
        images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
        x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - 0.5) / 0.5
        x = x[:, None].expand(-1, 3, -1, -1).contiguous()
        preds = []
        with torch.inference_mode():
            for i in range(0, len(x), 500):
                preds.append(model(pixel_values=x[i:i + 500]).logits.argmax(-1))
        best_p = min(best_p, time.perf_counter() - t)
        correct_p = int((torch.cat(preds).numpy() == labels).sum())
    return best_t, correct_t, best_p, correct_p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", default="deit-ti16,deit-s16,vit-b16")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--isas", default="", help="tessera's instruction sets to time, e.g. avx512,avx2 (default: the machine's best)")
    ap.add_argument("--int8", action="store_true", help="also time the int8 forms (tessera --int8, ONNX Runtime quantize_dynamic)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--append")
    ap.add_argument("--keep", help="write the checkpoints and ONNX files here (for scripts/browser_compare.mjs)")
    ap.add_argument("--eval", action="store_true", help="also time `tessera eval` against PyTorch on the same weights")
    args = ap.parse_args()
    if not os.path.exists(TESSERA):
        sys.exit(f"{TESSERA} is missing: cargo build --release")
    torch.set_num_threads(args.threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    rows = []
    work = args.keep or tempfile.mkdtemp(prefix="tessera-cpu-compare-")
    os.makedirs(work, exist_ok=True)
    isas = [i for i in args.isas.split(",") if i] or [None]
    for name in args.models.split(","):
        folder = os.path.join(work, name)
        model = make_model(name, folder)
        onnx_path = os.path.join(work, f"{name}.onnx")
        size = image_size(name)
        dummy = torch.randn(1, 3, size, size)
        torch.onnx.export(model, (dummy,), onnx_path, input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, opset_version=18, dynamo=False)
        sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(1)
        check = rng.standard_normal((2, 3, size, size), dtype=np.float32)
        with torch.no_grad():
            want = model(pixel_values=torch.from_numpy(check)).logits.numpy()
        diff_t = float(np.abs(tessera_logits(folder, check, args.threads) - want).max())
        diff_o = float(np.abs(sess.run(None, {"pixel_values": check})[0] - want).max())
        int8 = None
        if args.int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic
            q_folder = os.path.join(work, f"{name}-int8")
            subprocess.run([TESSERA, "--device", "cpu", "quantize", "--model", folder, "--bits", "8", "--out", q_folder],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            q_onnx = os.path.join(work, f"{name}-int8.onnx")
            quantize_dynamic(onnx_path, q_onnx, weight_type=QuantType.QInt8, per_channel=True)
            q_sess = ort.InferenceSession(q_onnx, opts, providers=["CPUExecutionProvider"])
            int8 = (q_folder, q_sess, float(np.abs(tessera_logits(q_folder, check, args.threads, int8=True) - want).max()),
                    float(np.abs(q_sess.run(None, {"pixel_values": check})[0] - want).max()))
        for batch in [int(b) for b in args.batches.split(",")]:
            px = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
            pt = torch.from_numpy(px)
            results = {f"tessera {i or 'best'}": [] for i in isas}
            results.update({"onnxruntime": [], "pytorch": []})
            if int8:
                results.update({f"tessera int8 {i or 'best'}": [] for i in isas})
                results["onnxruntime int8"] = []
            # Fewer timed runs where one takes seconds (ViT-B/16 at batch 32), never fewer than 10.
            iters = args.iters
            for _ in range(args.rounds):
                for i in isas:
                    results[f"tessera {i or 'best'}"].append(tessera_ms(folder, batch, args.threads, iters, isa=i))
                results["onnxruntime"].append(median_ms(lambda: sess.run(None, {"pixel_values": px}), iters, 3))
                with torch.inference_mode():
                    results["pytorch"].append(median_ms(lambda: model(pixel_values=pt).logits, iters, 3))
                if int8:
                    for i in isas:
                        results[f"tessera int8 {i or 'best'}"].append(tessera_ms(int8[0], batch, args.threads, iters, isa=i, int8=True))
                    results["onnxruntime int8"].append(median_ms(lambda: int8[1].run(None, {"pixel_values": px}), iters, 3))
            best = {k: min(v) for k, v in results.items()}
            rows.append((name, batch, best, diff_t, diff_o, int8[2:] if int8 else None))
            print(f"{name} batch {batch}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in best.items()), file=sys.stderr, flush=True)
    cpu = cpu_name()
    ghz = clock_ghz()
    isa_note = ", ".join(i or "the machine's best" for i in isas)
    lines = [
        f"Machine: {cpu}, {os.cpu_count()} cores" + (f", clock measured at {ghz:.2f} GHz" if ghz else "") +
        f"; {args.threads} threads for every engine; {datetime.date.today().isoformat()}. PyTorch {torch.__version__} "
        f"(eager, inference mode), ONNX Runtime {ort.__version__} (CPU provider, opset 18 export), tessera `--device cpu` "
        f"with the {isa_note} kernels. Median ms per run of {args.iters} after warm-up, the best of {args.rounds} "
        "alternated rounds; random weights (seed 0), " +
        ", ".join(sorted({f"{image_size(n)}x{image_size(n)}" for n in args.models.split(",")})) + " input.",
        "",
    ]
    keys = list(rows[0][2].keys()) if rows else []
    head = "| model | batch | " + " | ".join(f"{k} ms" for k in keys) + " | tessera / ORT | max logit diff vs PyTorch (tessera, ORT) |"
    lines += [head, "| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: | ---: |"]
    for name, batch, best, dt, do, q in rows:
        t = best[keys[0]]
        ratio = speed_ratio(t, best["onnxruntime"])
        diffs = f"{dt:.1e}, {do:.1e}" + (f"; int8 {q[0]:.1e}, {q[1]:.1e}" if q else "")
        lines.append(f"| {name} | {batch} | " + " | ".join(f"{best[k]:.1f}" for k in keys) + f" | {ratio} | {diffs} |")
    if args.eval:
        ts, tc, ps, pc = eval_compare(args.threads, args.rounds)
        lines += ["", "`tessera eval` (the embedded model, all 10,000 Fashion-MNIST test images, wall clock of the whole "
                  "command: process start, decoding, preprocessing) against PyTorch evaluating the same weights in batches "
                  "of 500 (preprocessing included, model already loaded):", "",
                  "| engine | seconds | correct |", "| --- | ---: | ---: |",
                  f"| tessera --device cpu | {ts:.2f} | {tc}/10000 |", f"| PyTorch | {ps:.2f} | {pc}/10000 |"]
    table = "\n".join(lines)
    print(table)
    if args.append:
        with open(args.append, "a") as f:
            f.write(f"\n## CPU backend against PyTorch and ONNX Runtime ({datetime.date.today().isoformat()})\n\n{table}\n")


if __name__ == "__main__":
    main()
