"""Generates the test checkpoints and their expected outputs with `transformers` on CPU.

Each fixture folder holds a random-weight checkpoint laid out as on the hub (config.json,
model.safetensors, preprocessor_config.json) and expected.safetensors with:
  pixel_values, logits (if the model has a head), last_hidden_state, pooler_output (if any),
  hidden_state.{i} (the encoder input and each layer's output, before the final norm),
  cls_attention (last layer, CLS query over the patch tokens, per head: [B, heads, N]).
The files are committed: the same seed gives different weights on other torch versions, so
tests never regenerate them.

    python scripts/make_fixtures.py --out tests/fixtures
"""
import argparse, json, os

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import (
    DeiTConfig, DeiTForImageClassification, DeiTForImageClassificationWithTeacher, DeiTModel,
    Dinov2Config, Dinov2ForImageClassification, Dinov2Model,
    ViTConfig, ViTForImageClassification, ViTModel,
)

LABELS = ["apple", "bicycle", "cloud", "dragon", "engine", "falcon", "guitar"]


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            if name.endswith("layernorm.weight") or ".norm" in name and name.endswith("weight") \
                    or "layernorm_" in name and name.endswith("weight"):
                p.copy_(1.0 + noise)
            elif "lambda1" in name:
                p.copy_(0.5 + noise)
            else:
                p.copy_(noise)


def labels(n):
    return {i: LABELS[i % len(LABELS)] + ("" if i < len(LABELS) else f"-{i}") for i in range(n)}


def save(model, out, name, pixel_values, preprocessor, dtype=None, interpolate=None):
    model.eval()
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    if dtype is not None:
        # Round the weights to the storage dtype, then compute the reference in f32 from them.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).to(torch.float32))
    kwargs = {"output_hidden_states": True, "output_attentions": True}
    if interpolate is not None:
        kwargs["interpolate_pos_encoding"] = interpolate
    with torch.no_grad():
        out_obj = model(pixel_values=pixel_values, **kwargs)
        base = getattr(model, model.base_model_prefix, model)
        base_out = base(pixel_values=pixel_values, **kwargs)
    expected = {"pixel_values": pixel_values}
    if hasattr(out_obj, "logits"):
        expected["logits"] = out_obj.logits
    expected["last_hidden_state"] = base_out.last_hidden_state
    if getattr(base_out, "pooler_output", None) is not None:
        expected["pooler_output"] = base_out.pooler_output
    for i, h in enumerate(base_out.hidden_states):
        expected[f"hidden_state.{i}"] = h
    prefix = 2 if "deit" in model.config.model_type else 1
    expected["cls_attention"] = base_out.attentions[-1][:, :, 0, prefix:]
    expected = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in expected.items()}
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder, safe_serialization=True)
    save_file(expected, os.path.join(folder, "expected.safetensors"))
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor, f, indent=2)
    print(f"{name}: {sorted(expected)} logits={tuple(expected.get('logits', torch.zeros(0)).shape)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    torch.manual_seed(0)
    vit_pre = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
               "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
               "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    common = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager")

    def pixels(b, h, w, seed):
        return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))

    # ViT with a classifier head.
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=5, id2label=labels(5), label2id={v: k for k, v in labels(5).items()},
                    **common)
    m = ViTForImageClassification(cfg); randomize(m, 1)
    save(m, args.out, "vit-classifier", pixels(2, 32, 32, 11), vit_pre)

    # ViT base model without qkv bias (with pooler), weights stored as f16, run at 48x40 (interpolated).
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                    intermediate_size=80, qkv_bias=False, layer_norm_eps=1e-6, **common)
    m = ViTModel(cfg); randomize(m, 2)
    save(m, args.out, "vit-base-nobias-f16", pixels(1, 48, 40, 12), vit_pre, dtype=torch.float16, interpolate=True)

    # DeiT distilled, with teacher head; weights stored as bf16.
    cfg = DeiTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=96, num_labels=7, id2label=labels(7), label2id={v: k for k, v in labels(7).items()},
                     **common)
    m = DeiTForImageClassificationWithTeacher(cfg); randomize(m, 3)
    deit_pre = dict(vit_pre, image_processor_type="DeiTImageProcessor", size={"height": 36, "width": 36},
                    resample=3, do_center_crop=True, crop_size={"height": 32, "width": 32})
    save(m, args.out, "deit-distilled-bf16", pixels(2, 32, 32, 13), deit_pre, dtype=torch.bfloat16)

    # DeiT with a single classifier head.
    m = DeiTForImageClassification(cfg); randomize(m, 4)
    save(m, args.out, "deit-classifier", pixels(1, 32, 32, 14), deit_pre)

    # DINOv2 with classifier (CLS + mean of patches), patch 14, run at 42x70 (always interpolated).
    cfg = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       mlp_ratio=2, layer_norm_eps=1e-6, num_labels=4, id2label=labels(4),
                       label2id={v: k for k, v in labels(4).items()}, **common)
    m = Dinov2ForImageClassification(cfg); randomize(m, 5)
    dino_pre = {"image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 64},
                "resample": 3, "do_center_crop": True, "crop_size": {"height": 56, "width": 56}, "do_rescale": True,
                "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True}
    save(m, args.out, "dinov2-classifier", pixels(2, 42, 70, 15), dino_pre)

    # DINOv2 base model at its own resolution.
    cfg = Dinov2Config(image_size=28, patch_size=14, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                       mlp_ratio=3, layer_norm_eps=1e-6, **common)
    m = Dinov2Model(cfg); randomize(m, 6)
    save(m, args.out, "dinov2-base", pixels(1, 28, 28, 16), dict(dino_pre, crop_size={"height": 28, "width": 28}))


if __name__ == "__main__":
    main()
