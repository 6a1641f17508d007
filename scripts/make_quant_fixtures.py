"""Quantized test checkpoints and what `transformers` computes from them.

Each fixture is one of the float fixtures of make_fixtures.py quantized by `tessera quantize`
(compressed-tensors pack-quantized), then:
  1. loaded by `transformers` (through the `compressed-tensors` package) from the folder, as any
     user would, and run on the source fixture's pixel values: expected.safetensors holds its
     logits, last hidden state, pooler output, every hidden state and the CLS attention
     (DINOv2: see below);
  2. checked against an independent reading of the file: the packed words unpacked with NumPy,
     times the scales, put into the float model, must give the same outputs (1e-5), so the
     expected values do not depend on either reader alone.
The files are committed; tests never regenerate them.

    cargo build --release && python scripts/make_quant_fixtures.py
"""
import json, os, shutil, subprocess, sys

import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch, save_file
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "quant")
TESSERA = os.path.join(ROOT, "target", "release", "tessera")

# (name, source fixture, bits, group size or None for per channel, interpolate)
CASES = [
    ("vit-classifier-int8", "vit-classifier", 8, None, None),
    ("vit-classifier-int4", "vit-classifier", 4, 16, None),
    ("vit-base-nobias-int4", "vit-base-nobias-f16", 4, 16, True),
    ("deit-distilled-int4", "deit-distilled-bf16", 4, 16, None),
    ("dinov2-classifier-int8", "dinov2-classifier", 8, None, None),
    ("dinov2-base-int4", "dinov2-base", 4, 32, None),
]


def unpack(packed, bits, cols):
    """int32 (rows, words) -> int values (rows, cols): value i in bits bits*(i % per)..."""
    per = 32 // bits
    w = packed.astype(np.int64) & 0xFFFFFFFF
    out = np.zeros((w.shape[0], w.shape[1] * per), dtype=np.int64)
    for i in range(per):
        out[:, i::per] = (w >> (bits * i)) & ((1 << bits) - 1)
    return out[:, :cols] - (1 << (bits - 1))


def dequantized(folder, bits):
    """Every packed Linear weight of the folder, dequantized with NumPy: {module name: (out, in)}."""
    st = {k: (v.to(torch.float32) if v.is_floating_point() else v).numpy() for k, v in load_torch(os.path.join(folder, "model.safetensors")).items()}
    out = {}
    for name in st:
        if not name.endswith(".weight_packed"):
            continue
        base = name[: -len(".weight_packed")]
        o, i = (int(v) for v in st[base + ".weight_shape"])
        q = unpack(st[name], bits, i)
        s = st[base + ".weight_scale"].astype(np.float32)
        group = -(-i // s.shape[1])
        s = np.repeat(s, group, axis=1)[:, :i]
        out[base] = (q.astype(np.float32) * s).astype(np.float32)
    return out


def model_class(folder):
    arch = json.load(open(os.path.join(folder, "config.json")))["architectures"][0]
    return getattr(transformers, arch)


def outputs(model, pixel_values, interpolate):
    kwargs = {"output_hidden_states": True, "output_attentions": True}
    if interpolate is not None:
        kwargs["interpolate_pos_encoding"] = interpolate
    with torch.no_grad():
        out = model(pixel_values=pixel_values, **kwargs)
        base = getattr(model, model.base_model_prefix, model)
        b = base(pixel_values=pixel_values, **kwargs)
    e = {"pixel_values": pixel_values}
    if hasattr(out, "logits"):
        e["logits"] = out.logits
    e["last_hidden_state"] = b.last_hidden_state
    if getattr(b, "pooler_output", None) is not None:
        e["pooler_output"] = b.pooler_output
    for i, h in enumerate(b.hidden_states):
        e[f"hidden_state.{i}"] = h
    prefix = 2 if "deit" in model.config.model_type else 1
    e["cls_attention"] = b.attentions[-1][:, :, 0, prefix:]
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in e.items()}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, src, bits, group, interp in CASES:
        folder = os.path.join(OUT, name)
        shutil.rmtree(folder, ignore_errors=True)
        cmd = [TESSERA, "quantize", "--model", os.path.join(FIX, src), "--bits", str(bits), "--out", folder, "--check-images", "0"]
        if group:
            cmd += ["--group-size", str(group)]
        subprocess.run(cmd, check=True, env=dict(os.environ, TESSERA_DEVICE="cpu"))
        pixels = torch.from_numpy(load_file(os.path.join(FIX, src, "expected.safetensors"))["pixel_values"])
        cls = model_class(folder)

        # 1. transformers reading the quantized folder. transformers 5.24 cannot load any
        # compressed-tensors DINOv2: its quantizer expands DINOv2's SwiGLU key mapping
        # (mlp.weights_in -> gate_proj, up_proj) with the quantized suffixes and refuses the result,
        # whether or not the model uses SwiGLU. There the float model with the NumPy-dequantized
        # weights (2.) gives the expected outputs alone.
        try:
            q = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
            expected = outputs(q, pixels, interp)
        except ValueError as e:
            if "dinov2" not in name or "weights_in" not in str(e):
                raise
            print(f"{name}: transformers cannot load a quantized DINOv2 ({str(e)[:80]}...); expected from the dequantized float model")
            expected = None

        # 2. the float model with NumPy-dequantized weights.
        f = cls.from_pretrained(os.path.join(FIX, src), dtype=torch.float32, attn_implementation="eager").eval()
        raw = {k: v.to(torch.float32).numpy() for k, v in load_torch(os.path.join(FIX, src, "model.safetensors")).items()}
        deq = dequantized(folder, bits)
        patched = {}
        for base, w in deq.items():
            patched[base + ".weight"] = torch.from_numpy(w)
        # Load through the same key mapping transformers applies to checkpoints.
        sd = {k: torch.from_numpy(v.astype(np.float32)) for k, v in raw.items() if k not in patched}
        sd.update(patched)
        tmp = os.path.join(OUT, ".tmp-float")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(os.path.join(FIX, src), tmp)
        save_file(sd, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        cfg = json.load(open(os.path.join(tmp, "config.json")))
        cfg["dtype"] = "float32"
        json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"))
        f = cls.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
        shutil.rmtree(tmp)
        check = outputs(f, pixels, interp)
        agree = "transformers and NumPy agree"
        if expected is None:
            expected, agree = check, "expected from the NumPy-dequantized float model"
        for k in expected:
            diff = (expected[k] - check[k]).abs().max().item()
            assert diff < 1e-5, f"{name}: {k} differs by {diff} between transformers and the NumPy dequantization"
        # And the dequantized weights are close to the originals (a bound per bit width).
        for base, w in deq.items():
            orig = raw[base + ".weight"].astype(np.float32)
            rel = np.abs(w - orig).max() / np.abs(orig).max()
            assert rel < (0.01 if bits == 8 else 0.15), f"{name}: {base} dequantizes {rel} away"
        save_file(expected, os.path.join(folder, "expected.safetensors"))
        print(f"{name}: {len(deq)} packed Linear layers; {agree}; {sorted(expected)}")


if __name__ == "__main__":
    sys.exit(main())
