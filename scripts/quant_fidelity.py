"""Quantized against float: every test checkpoint (the embedded default and the random-weight
fixtures) quantized by `tessera quantize` to 8 bits (per channel) and 4 bits (groups of 32, or
16 where the model is narrower than 32), then the embeddings of the test photos
(tests/fixtures/photos: chelsea.png, coffee-crop.png, coffee-cmyk.jpg) compared with the float
model's by cosine similarity, and the weight file sizes. Standard library only; needs
`cargo build --release`:

    python3 scripts/quant_fidelity.py [--device cpu] [--markdown]
"""
import argparse, json, math, os, struct, subprocess, tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TESSERA = os.path.join(ROOT, "target/release/tessera")
PHOTOS = [os.path.join(ROOT, "tests/fixtures/photos", f) for f in ["chelsea.png", "coffee-crop.png", "coffee-cmyk.jpg"]]
CHECKPOINTS = ["embedded"] + [os.path.join(ROOT, "tests/fixtures", f) for f in
                              ["vit-classifier", "vit-base-nobias-f16", "deit-distilled-bf16", "deit-classifier", "dinov2-classifier", "dinov2-base"]]


def embeddings(device, model, pool):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "e.safetensors")
        subprocess.run([TESSERA, "--device", device, "embed", "--model", model, "--pool", pool, "--out", out] + PHOTOS,
                       check=True, capture_output=True)
        data = open(out, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    rows, dim = header["embeddings"]["shape"]
    a, b = header["embeddings"]["data_offsets"]
    vals = struct.unpack(f"<{rows * dim}f", data[8 + n + a:8 + n + b])
    return [vals[i * dim:(i + 1) * dim] for i in range(rows)]


def cosine(x, y):
    dot = sum(a * b for a, b in zip(x, y))
    return dot / math.sqrt(sum(a * a for a in x) * sum(b * b for b in y))


def hidden_size(model):
    if model == "embedded":
        return json.load(open(os.path.join(ROOT, "models/fashion-vit/config.json")))["hidden_size"]
    return json.load(open(os.path.join(model, "config.json")))["hidden_size"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ck in CHECKPOINTS:
            name = os.path.basename(ck)
            base = {pool: embeddings(args.device, ck, pool) for pool in ["pooler", "cls"]}
            src = os.path.join(ROOT, "models/fashion-vit") if ck == "embedded" else ck
            size = os.path.getsize(os.path.join(src, "model.safetensors"))
            for bits in [8, 4]:
                out = os.path.join(tmp, f"{name}-{bits}")
                cmd = [TESSERA, "--device", args.device, "quantize", "--model", ck, "--bits", str(bits), "--out", out, "--check-images", "0"]
                group = None
                if bits == 4:
                    group = 32 if hidden_size(ck) >= 32 and hidden_size(ck) % 32 == 0 else 16
                    cmd += ["--group-size", str(group)]
                subprocess.run(cmd, check=True, capture_output=True)
                q = {pool: embeddings(args.device, out, pool) for pool in ["pooler", "cls"]}
                cos = {pool: min(cosine(x, y) for x, y in zip(base[pool], q[pool])) for pool in base}
                qsize = os.path.getsize(os.path.join(out, "model.safetensors"))
                rows.append((name, bits, group, cos["pooler"], cos["cls"], size, qsize))
                print(f"{name:22} int{bits}{'' if group is None else f'/g{group}':5} min cosine over {len(PHOTOS)} photos: "
                      f"pooler {cos['pooler']:.5f}, CLS {cos['cls']:.5f}; file {size} -> {qsize} bytes ({qsize / size:.3f}x)", flush=True)
    if args.markdown:
        print("\n| checkpoint | scheme | min cosine, pooler output | min cosine, CLS token | file size |")
        print("| --- | --- | --- | --- | --- |")
        for name, bits, group, cp, cc, size, qsize in rows:
            scheme = f"int{bits} " + ("per channel" if group is None else f"groups of {group}")
            print(f"| {name} | {scheme} | {cp:.5f} | {cc:.5f} | {size / 1e3:.0f} KB -> {qsize / 1e3:.0f} KB ({qsize / size:.2f}x) |")


if __name__ == "__main__":
    main()
