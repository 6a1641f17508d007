"""tessera's CPU GEMM in isolation against ONNX Runtime's MLAS (a graph of one MatMul whose B is an
initializer, as a model's weights are) and the `gemm` crate, on the matrix products of DeiT-S/16
and ViT-B/16 at batch 1, 8 and 64 (M = 197 tokens x batch), with 1 and N threads: f32, and int8
(tessera's int8 arithmetic, B per channel and A per token; ONNX Runtime's `quantize_dynamic` of
the same one-MatMul graph, int8 weights per channel). GFLOP/s count 2 M N K either way; set them
against the machine's f32 peak (cores x measured clock x 2 FMA units x lanes x 2).

tessera and the gemm crate are timed by `tools/gemm-compare` (built here with cargo), ONNX Runtime
from Python; the minimum over rounds of the median of 10. Needs onnx, onnxruntime, numpy. Prints
a markdown table:

    python3 scripts/gemm_compare.py [--threads 2] [--batches 1,8,64]
"""
import argparse, os, subprocess, sys, tempfile, time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOOL = os.path.join(ROOT, "tools/gemm-compare")

# (K, N) of each product of a layer: qkv, proj, fc1, fc2.
MODELS = {"deit-s16": [(384, 1152), (384, 384), (384, 1536), (1536, 384)],
          "vit-b16": [(768, 2304), (768, 768), (768, 3072), (3072, 768)]}


def median_ms(fn, iters=10, warmup=3):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(iters):
        s = time.perf_counter()
        fn()
        t.append((time.perf_counter() - s) * 1e3)
    t.sort()
    return t[len(t) // 2]


def ort_ms(m, k, n, threads, int8, work):
    rng = np.random.default_rng(0)
    b = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(b, "b")])
    path = os.path.join(work, f"mm-{m}-{k}-{n}.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        qpath = path.replace(".onnx", "-int8.onnx")
        quantize_dynamic(path, qpath, weight_type=QuantType.QInt8, per_channel=True)
        path = qpath
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    a = rng.standard_normal((m, k)).astype(np.float32)
    return min(median_ms(lambda: sess.run(None, {"a": a})) for _ in range(2))


def tool(shapes, threads, int8):
    env = dict(os.environ, SHAPES=",".join(f"{m}x{k}x{n}" for m, k, n in shapes))
    if int8:
        env["INT8"] = "best"
    out = subprocess.run([os.path.join(TOOL, "target/release/gemm-compare"), str(threads)], env=env, check=True,
                         capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and "x" in parts[0] and parts[0][0].isdigit():
            rows[parts[0]] = (float(parts[1]), float(parts[2]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batches", default="1,8,64")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=TOOL, check=True)
    shapes = [(197 * b, k, n, name) for name in MODELS for b in map(int, args.batches.split(",")) for k, n in MODELS[name]]
    lines = ["| model | M x K x N | threads | tessera f32 ms | gemm crate ms | ORT (MLAS) f32 ms | tessera int8 ms | ORT int8 ms | GFLOP/s tessera f32 / ORT f32 / tessera int8 / ORT int8 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    with tempfile.TemporaryDirectory() as work:
        for threads in sorted({1, args.threads}):
            f32 = tool([s[:3] for s in shapes], threads, False)
            i8 = tool([s[:3] for s in shapes], threads, True)
            for m, k, n, name in shapes:
                key = f"{m}x{k}x{n}"
                o32, o8 = ort_ms(m, k, n, threads, False, work), ort_ms(m, k, n, threads, True, work)
                t32, g32 = f32[key]
                t8 = i8[key][1]
                gf = lambda ms: 2.0 * m * k * n / (ms * 1e6)
                lines.append(f"| {name} | {key} | {threads} | {t32:.3f} | {g32:.3f} | {o32:.3f} | {t8:.3f} | {o8:.3f} | "
                             f"{gf(t32):.0f} / {gf(o32):.0f} / {gf(t8):.0f} / {gf(o8):.0f} |")
                print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
