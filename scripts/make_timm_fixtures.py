"""`timm` test checkpoints (random weights) and what `timm` computes from them, on CPU.

Each folder under tests/fixtures/timm holds what `timm.models.save_for_hf` writes (config.json
with architecture, model_args and pretrained_cfg; model.safetensors) and expected.safetensors:
  pixel_values, logits (where the model has a head), last_hidden_state (forward_features),
  pooler_output (forward_head(pre_logits=True)), hidden_state.{i} (after the position embedding
  and norm_pre, then each block), cls_attention (last block, class token over the patches; only
  for models with a class token).
Small architectures through timm's own factory (create_model with overrides), covering: class
token or none, register tokens, position embeddings without the prefix (no_embed_class), layer
scale, pre-norm (CLIP image towers, GELU and quick GELU), average pooling with fc_norm, DeiT's distillation head, and an
input size other than the checkpoint's (dynamic_img_size: antialiased position resampling).

tests/fixtures/timm-flexi/vit-token-p{4,16} hold what timm computes for vit-token rebuilt at
patch 4 and 16 (patch kernel and position embeddings resampled by timm's own functions).
It also writes tests/fixtures/photos/timm-expected.safetensors: the test photos through timm's
evaluation transform (resolve_data_config + create_transform) for the configs in
tests/fixtures/photos/timm-configs.json.

    python scripts/make_timm_fixtures.py
"""
import json, os, shutil

import torch
import timm
from timm.data import create_transform, resolve_data_config
from timm.models._hub import save_for_hf
from safetensors.torch import save_file
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "timm")
OUT_FLEXI = os.path.join(ROOT, "tests", "fixtures", "timm-flexi")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")

SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
# (folder, architecture, overrides, batch, input (h, w))
CASES = [
    ("vit-token", "vit_tiny_patch16_224", dict(SMALL, num_classes=5), 2, (32, 32)),
    ("deit3-layerscale", "deit3_small_patch16_224", dict(SMALL, num_classes=4), 1, (32, 32)),
    ("vit-reg-avg", "vit_small_patch16_224", dict(SMALL, num_classes=3, reg_tokens=2, class_token=False, no_embed_class=True, global_pool="avg", fc_norm=True), 2, (32, 32)),
    ("vit-clip-prenorm", "vit_base_patch16_clip_224", dict(SMALL, num_classes=6, embed_dim=48, num_heads=3), 1, (32, 32)),
    ("deit-distilled", "deit_tiny_distilled_patch16_224", dict(SMALL, num_classes=5), 2, (32, 32)),
    ("flexivit-dynamic", "flexivit_small", dict(SMALL, num_classes=0, dynamic_img_size=True), 1, (48, 40)),
    ("vit-clip-quickgelu", "vit_base_patch16_clip_quickgelu_224", dict(SMALL, num_classes=0), 2, (32, 32)),
    ("vit-siglip-map", "vit_base_patch16_siglip_224", dict(SMALL, num_classes=4), 2, (32, 32)),
    ("vit-siglip-map-gelutanh", "vit_base_patch16_siglip_224", dict(SMALL, num_classes=0, act_layer="gelu_tanh", embed_dim=48, num_heads=3), 1, (32, 32)),
]


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            if ("norm" in name and name.endswith("weight")) or name.endswith(".gamma"):
                p.copy_((1.0 if "norm" in name else 0.5) + noise)
            else:
                p.copy_(noise)


def expected(model, px):
    out = {"pixel_values": px}
    with torch.no_grad():
        feats = model.forward_features(px)
        out["last_hidden_state"] = feats
        out["pooler_output"] = model.forward_head(feats, pre_logits=True)
        if model.num_classes:
            out["logits"] = model(px)
        x = model.patch_embed(px)
        x = model._pos_embed(x)
        x = model.norm_pre(x)
        hidden = [x]
        for blk in model.blocks:
            x = blk(x)
            hidden.append(x)
        for i, h in enumerate(hidden):
            out[f"hidden_state.{i}"] = h
        if model.cls_token is not None:
            blk = model.blocks[-1]
            y = blk.norm1(hidden[-2])
            b, n, c = y.shape
            heads = blk.attn.num_heads
            qkv = blk.attn.qkv(y).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            att = ((qkv[0] * blk.attn.scale) @ qkv[1].transpose(-2, -1)).softmax(-1)
            out["cls_attention"] = att[:, :, 0, model.num_prefix_tokens:]
    return {k: v.detach().float().contiguous().clone() for k, v in out.items()}


def main():
    for d in (OUT, OUT_FLEXI):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    for seed, (name, arch, kw, batch, (h, w)) in enumerate(CASES):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, **kw).eval()
        randomize(model, 100 + seed)
        folder = os.path.join(OUT, name)
        save_for_hf(model, folder, safe_serialization=True)
        for f in os.listdir(folder):
            if f not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(folder, f))
        px = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(200 + seed))
        e = expected(model, px)
        save_file(e, os.path.join(folder, "expected.safetensors"))
        cfg = json.load(open(os.path.join(folder, "config.json")))
        print(f"{name}: {arch} eps={model.blocks[0].norm1.eps} prefix={model.num_prefix_tokens} "
              f"pool={model.global_pool} args={cfg.get('model_args')} -> {sorted(e)}")

    # The patch-size dial: vit-token at patch 4 and 16 as timm builds it, the patch kernel
    # resampled by timm's resample_patch_embed with FlexiViT's bilinear pseudo-inverse (the one
    # tessera uses) and the position embeddings by resample_abs_pos_embed.
    from timm.layers import resample_abs_pos_embed, resample_patch_embed
    name, arch, kw, batch, (h, w) = CASES[0]
    src = timm.create_model(arch, pretrained=False, **kw).eval()
    from safetensors.torch import load_file
    src.load_state_dict(load_file(os.path.join(OUT, name, "model.safetensors")))
    for q in (4, 16):
        model = timm.create_model(arch, pretrained=False, **dict(kw, patch_size=q)).eval()
        sd = {k: v.clone() for k, v in src.state_dict().items()}
        sd["patch_embed.proj.weight"] = resample_patch_embed(sd["patch_embed.proj.weight"], [q, q], interpolation="bilinear", antialias=False)
        sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], new_size=[h // q, w // q], num_prefix_tokens=1)
        model.load_state_dict(sd)
        px = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(300 + q))
        folder = os.path.join(OUT_FLEXI, f"{name}-p{q}")
        os.makedirs(folder, exist_ok=True)
        save_file(expected(model, px), os.path.join(folder, "expected.safetensors"))
        print(f"{name} at patch {q}: {h // q}x{w // q} grid")

    # Preprocessing: timm's evaluation transform on the test photos.
    configs = json.load(open(os.path.join(PHOTOS, "timm-configs.json")))
    out = {}
    for name, pre in configs.items():
        data = resolve_data_config(pretrained_cfg=pre)
        tf = create_transform(**data, is_training=False)
        for photo in ["chelsea.png", "coffee-crop.png"]:
            img = Image.open(os.path.join(PHOTOS, photo)).convert("RGB")
            out[f"{name}/{photo}"] = tf(img).contiguous()
        print(f"{name}: {data}")
    save_file(out, os.path.join(PHOTOS, "timm-expected.safetensors"))


if __name__ == "__main__":
    main()
