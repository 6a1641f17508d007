"""Generates the fixtures for running a checkpoint at another patch size (PI-resize, FlexiViT),
from scripts/flexi.py (the paper's definition: the full p^2 x q^2 pseudo-inverse, in NumPy),
independently of tessera's Rust code.

tests/fixtures/flexi/kernels.safetensors:
  kernel.{p}       a random patch kernel (2, 3, p, p)
  resized.{p}.{q}  that kernel PI-resized to (2, 3, q, q)
  matrix.{p}.{q}   pinv(B^T), (q*q, p*p), for the smaller pairs
tests/fixtures/flexi/{fixture}-p{q}/expected.safetensors: what `transformers` outputs for the
checkpoint tests/fixtures/{fixture} made into a patch-q model: a model of the same class whose
config says patch_size q, with the reference-resized patch kernel and the checkpoint's other
weights (its position embeddings stay on the checkpoint's grid and are interpolated by
`transformers` to the input's grid at run time, bicubic). Same keys as scripts/make_fixtures.py.

    python scripts/make_flexi_fixtures.py --out tests/fixtures/flexi
"""
import argparse, copy, os, sys

import torch
from safetensors.torch import save_file
from transformers import AutoConfig
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flexi import pi_resize, pi_resize_matrix  # noqa: E402

KERNEL_PAIRS = [(8, 4), (8, 16), (8, 6), (8, 1), (14, 7), (14, 10), (14, 28), (4, 2), (4, 7), (4, 14), (16, 32), (3, 5)]

# (fixture, patch size, pixel_values: the fixture's own, or (batch, h, w, seed))
MODELS = [
    ("vit-classifier", 4, None),
    ("vit-classifier", 16, None),
    ("vit-classifier", 6, (1, 40, 28, 21)),
    ("deit-distilled-bf16", 4, None),
    ("dinov2-classifier", 10, None),
    ("dinov2-base", 7, None),
    ("dinov2-base", 4, (1, 28, 28, 22)),
]


def outputs(model, pixel_values):
    kwargs = {"output_hidden_states": True, "output_attentions": True, "interpolate_pos_encoding": True}
    with torch.no_grad():
        out = model(pixel_values=pixel_values, **kwargs)
        base = getattr(model, model.base_model_prefix, model)
        b = base(pixel_values=pixel_values, **kwargs)
    e = {"pixel_values": pixel_values, "last_hidden_state": b.last_hidden_state}
    if hasattr(out, "logits"):
        e["logits"] = out.logits
    if getattr(b, "pooler_output", None) is not None:
        e["pooler_output"] = b.pooler_output
    for i, h in enumerate(b.hidden_states):
        e[f"hidden_state.{i}"] = h
    prefix = 2 if "deit" in model.config.model_type else 1
    e["cls_attention"] = b.attentions[-1][:, :, 0, prefix:]
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in e.items()}


def resized_model(folder, q):
    cfg = AutoConfig.from_pretrained(folder)
    arch = getattr(transformers, cfg.architectures[0]) if cfg.architectures else transformers.AutoModel
    orig = arch.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    p = cfg.patch_size
    grid = cfg.image_size // p
    new_cfg = copy.deepcopy(orig.config)
    new_cfg.patch_size = q
    new_cfg.image_size = grid * q  # the checkpoint's position grid, at patch q
    model = type(orig)(new_cfg)
    state = orig.state_dict()
    key = next(k for k in state if k.endswith("patch_embeddings.projection.weight"))
    state[key] = pi_resize(state[key].to(torch.float64), q).to(torch.float32)
    model.load_state_dict(state, strict=True)
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/flexi")
    ap.add_argument("--fixtures", default="tests/fixtures")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    g = torch.Generator().manual_seed(7)
    kernels = {}
    for p in sorted({p for p, _ in KERNEL_PAIRS}):
        kernels[f"kernel.{p}"] = torch.randn(2, 3, p, p, generator=g, dtype=torch.float64)
    for p, q in KERNEL_PAIRS:
        kernels[f"resized.{p}.{q}"] = pi_resize(kernels[f"kernel.{p}"], q)
        if p * p * q * q <= 40000:
            kernels[f"matrix.{p}.{q}"] = pi_resize_matrix(p, q)
    save_file({k: v.to(torch.float32).contiguous() for k, v in kernels.items()}, os.path.join(args.out, "kernels.safetensors"))
    print(f"kernels: {len(KERNEL_PAIRS)} pairs")

    for name, q, pix in MODELS:
        folder = os.path.join(args.fixtures, name)
        model = resized_model(folder, q)
        if pix is None:
            from safetensors.torch import load_file
            pixel_values = load_file(os.path.join(folder, "expected.safetensors"))["pixel_values"]
        else:
            b, h, w, seed = pix
            pixel_values = torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))
        e = outputs(model, pixel_values)
        dst = os.path.join(args.out, f"{name}-p{q}")
        os.makedirs(dst, exist_ok=True)
        save_file(e, os.path.join(dst, "expected.safetensors"))
        print(f"{name} at patch {q}: input {tuple(pixel_values.shape)}, tokens {e['last_hidden_state'].shape[1]}")


if __name__ == "__main__":
    main()
