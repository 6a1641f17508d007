"""Token merging fixtures: `timm` checkpoints (random weights) run with ToMe's own timm patch
(facebookresearch/ToMe, `tome/`: not on PyPI; point TOME at a folder holding it), on CPU.

Each folder under tests/fixtures/tome holds what `timm.models.save_for_hf` writes (config.json,
model.safetensors) and expected.safetensors with pixel_values, then for each case `{case}/...`:
  r, schedule (0 constant, 1 decreasing)  the dial (1-element tensors)
  tokens        (L + 1)        tokens entering each block, then after the last
  logits, last_hidden_state    the patched model's outputs (forward_features: the tokens left)
  hidden_state.{i}             the embeddings, then each block's output
  groups        (B, T0)        the row among the tokens entering the last block that each original
                               token went into (from ToMe's source tracking; identity if none merged)
  sizes         (B, T_last)    those tokens' sizes
  cls_attention (B, H, T_last - prefix)  the class token's attention in the last block, with
                               proportional attention (models with a class token)
  groups_end, sizes_end        the same after the last block (models without a class token)

    TOME=/path/to/ToMe python scripts/make_tome_fixtures.py
"""
import json, os, shutil, sys

import torch
import timm
from timm.models._hub import save_for_hf
from safetensors.torch import save_file

sys.path.insert(0, os.environ.get("TOME", "/work/tome"))
import tome  # noqa: E402
from tome.patch.timm import apply_patch  # noqa: E402
from tome.utils import parse_r  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tome")

SMALL = dict(img_size=64, patch_size=8, embed_dim=48, depth=4, num_heads=3, mlp_ratio=2.0)
# (folder, architecture, overrides, batch, cases: (r, decreasing))
CASES = [
    ("deit-s", "deit_small_patch16_224", dict(SMALL, num_classes=5), 2, [(0, False), (3, False), (8, False), (20, False), (8, True)]),
    ("deit-ti-distilled", "deit_tiny_distilled_patch16_224", dict(SMALL, num_classes=4, embed_dim=32, num_heads=2), 2, [(5, False), (12, True)]),
    ("clip-tower", "vit_base_patch16_clip_224", dict(SMALL, num_classes=0), 1, [(6, False), (40, False)]),
    ("vit-avg", "vit_small_patch16_224", dict(SMALL, num_classes=3, class_token=False, global_pool="avg", fc_norm=True), 2, [(7, False)]),
    ("siglip-map", "vit_base_patch16_siglip_224", dict(SMALL, num_classes=4), 1, [(5, False)]),
]


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)


def run(model, px, r, decreasing):
    """The patched model at (r, schedule), with each block's input state recorded by hooks."""
    model.r = (r, -1.0) if decreasing else r
    info = model._tome_info
    # What ToMeVisionTransformer.forward sets before running (forward_features is called here
    # directly to read the tokens, so the same three lines).
    info["r"] = parse_r(len(model.blocks), model.r)
    info["size"] = None
    info["source"] = None
    states = []  # (tokens in, size, source) before each block
    hooks = [blk.register_forward_pre_hook(lambda m, a: states.append((a[0], info["size"], info["source"]))) for blk in model.blocks]
    hidden = []
    hooks += [blk.register_forward_hook(lambda m, a, o: hidden.append(o)) for blk in model.blocks]
    with torch.no_grad():
        feats = model.forward_features(px)
        head = model.forward_head(feats) if model.num_classes else None
    for h in hooks:
        h.remove()
    out = {"r": torch.tensor([float(r)]), "schedule": torch.tensor([1.0 if decreasing else 0.0])}
    out["tokens"] = torch.tensor([float(s[0].shape[1]) for s in states] + [float(feats.shape[1])])
    out["last_hidden_state"] = feats
    if head is not None:
        out["logits"] = head
    out["hidden_state.0"] = states[0][0]
    for i, h in enumerate(hidden):
        out[f"hidden_state.{i + 1}"] = h
    b, t0 = px.shape[0], states[0][0].shape[1]

    def groups(source, t):
        if source is None:
            return torch.arange(t0).float().expand(b, t0).contiguous(), torch.ones(b, t)
        return source.argmax(dim=1).float(), source.sum(dim=2)

    x_last, size_last, source_last = states[-1]
    g, s = groups(source_last, x_last.shape[1])
    if size_last is not None:
        assert torch.equal(s, size_last[..., 0]), "sizes agree with the sources"
    out["groups"], out["sizes"] = g, s
    if model.cls_token is not None:
        blk = model.blocks[-1]
        y = blk.norm1(x_last)
        n, c = y.shape[1], y.shape[2]
        heads = blk.attn.num_heads
        qkv = blk.attn.qkv(y).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        att = (qkv[0] @ qkv[1].transpose(-2, -1)) * blk.attn.scale
        if size_last is not None:
            att = att + size_last.log()[:, None, None, :, 0]
        out["cls_attention"] = att.softmax(-1)[:, :, 0, model.num_prefix_tokens:]
    else:
        g, s = groups(info["source"], feats.shape[1])
        out["groups_end"], out["sizes_end"] = g, s
    return out


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for seed, (name, arch, kw, batch, cases) in enumerate(CASES):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, **kw).eval()
        randomize(model, 500 + seed)
        folder = os.path.join(OUT, name)
        save_for_hf(model, folder, safe_serialization=True)
        for f in os.listdir(folder):
            if f not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(folder, f))
        plain = {}
        px = torch.randn(batch, 3, kw["img_size"], kw["img_size"], generator=torch.Generator().manual_seed(600 + seed))
        with torch.no_grad():
            plain_logits = model(px) if model.num_classes else model.forward_features(px)
        apply_patch(model, trace_source=True)
        with torch.no_grad():
            model.r = cases[-1][0]
            whole = model(px)  # the patched model's own forward, for the check below
        exp = {"pixel_values": px}
        for r, decreasing in cases:
            key = f"r{r}" + ("-decreasing" if decreasing else "")
            out = run(model, px, r, decreasing)
            for k, v in out.items():
                exp[f"{key}/{k}"] = v
            if (r, decreasing) == cases[-1] and model.num_classes:
                assert torch.allclose(out["logits"], whole, atol=1e-6) or decreasing, "forward_features + forward_head is forward"
            print(f"{name} {key}: tokens {[int(t) for t in out['tokens']]}")
            if r == 0:
                # ToMe's r = 0 is the unpatched model.
                ref = out["logits"] if model.num_classes else out["last_hidden_state"]
                assert torch.allclose(ref, plain_logits, atol=1e-6), "r = 0 is the plain model"
        save_file({k: v.detach().float().contiguous().clone() for k, v in exp.items()}, os.path.join(folder, "expected.safetensors"))


if __name__ == "__main__":
    main()
