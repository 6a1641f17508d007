"""SigLIP 2 NaFlex test checkpoints (random weights) and what `transformers` computes from them, on
CPU: Siglip2VisionModel (with its attention-pooling head), Siglip2ForImageClassification and
Siglip2Model (with the Gemma-style tokenizer.json of tests/fixtures/siglip-zero-shot), as the hub
lays them out (config.json, model.safetensors, preprocessor_config.json as Siglip2ImageProcessor
writes it, with `max_num_patches`).

Every checkpoint has an 8x8 grid of learned positions (num_patches 64) and 16-pixel patches. Each
case is one image at one patch budget, through Siglip2ImageProcessorPil (the PIL backend, which
tessera's preprocessing follows): photos and crops of very different aspect ratios (451x300,
240x180, 600x32, 30x300, 20x13, scaled up) at budgets 16, 64 and 144 (above the position grid).
`cases.json` lists them: the image file, the budget, the processor's target size and its grid.
`siglip2/pixels/<case>.safetensors` holds `pixel_values` (1, 3, H, W): the resized, rescaled and
normalized image the processor patchified, put back together (the same for every checkpoint);
each checkpoint's `expected-<case>.safetensors` its `last_hidden_state` (1, T, D) of the
T = gh * gw valid tokens, `pooler_output`, `image_embeds` (Siglip2Model: the pooled features),
`logits` (the classifier) and, for Siglip2VisionModel, `hidden_state.{i}` and `pool_attention`
(1, heads, T): the attention-pooling head's probabilities over the valid tokens. The model ran on the processor's padded patches
with its attention mask, as transformers runs NaFlex; only the valid tokens are kept.

A padded batch: `siglip2/pixels/padded-64.safetensors` holds what the processor returns for
chelsea.png, the 600x32 strip, the 30x300 column and the 20x13 crop together at budget 64
(`pixel_values` (4, 64, 768) patches, each image's padded to 64; `pixel_attention_mask`;
`spatial_shapes`), and each checkpoint's `expected-padded-64.safetensors` what the model computes
from it: the whole padded `last_hidden_state` (4, 64, D), `pooler_output`, `image_embeds`,
`logits`, `pool_attention` (4, heads, 64).

For Siglip2Model, zero-shot.safetensors holds the labels of zero-shot.json through the template
(padded to max_length as the processor pads), logits_per_image, their sigmoids, text_embeds and
image_embeds for chelsea.png at the checkpoint's own budget.

    python scripts/make_siglip2_fixtures.py
"""
import json, os, shutil

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (AutoTokenizer, Siglip2Config, Siglip2ForImageClassification, Siglip2Model, Siglip2VisionConfig,
                          Siglip2VisionModel)
from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

from make_clip_fixtures import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "siglip2")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "siglip-zero-shot")
PATCH = 16
BUDGETS = [16, 64, 144]


def images(out):
    """The test images: two photos and three crops of chelsea.png of extreme aspect ratios."""
    chelsea = Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB")
    crops = {"strip-600x32.png": chelsea.crop((0, 140, 451, 164)).resize((600, 32), Image.BICUBIC),
             "column-30x300.png": chelsea.crop((200, 0, 230, 300)),
             "tiny-20x13.png": chelsea.crop((180, 120, 200, 133))}
    for name, img in crops.items():
        img.save(os.path.join(out, name))
    return [("chelsea.png", os.path.join(PHOTOS, "chelsea.png")), ("coffee-crop.png", os.path.join(PHOTOS, "coffee-crop.png"))] + \
        [(name, os.path.join(out, name)) for name in crops]


def unpatchify(patches, gh, gw):
    """(T, p * p * 3) patches in (row, column, channel) order back to a (3, gh * p, gw * p) image."""
    x = patches[: gh * gw].reshape(gh, gw, PATCH, PATCH, 3)
    return x.permute(4, 0, 2, 1, 3).reshape(3, gh * PATCH, gw * PATCH)


def run(model, proc, path, budget):
    img = Image.open(path).convert("RGB")
    b = proc(images=[img], max_num_patches=budget, return_tensors="pt")
    gh, gw = (int(v) for v in b["spatial_shapes"][0])
    vm = model.vision_model if hasattr(model, "vision_model") else model
    # The attention-pooling head's probabilities, from its nn.MultiheadAttention called again on
    # the same inputs with need_weights (transformers' forward drops them).
    seen = {}
    hook = None
    if getattr(vm, "head", None) is not None:
        hook = vm.head.attention.register_forward_hook(lambda m, args, kwargs, out: seen.update(args=args, kwargs=kwargs), with_kwargs=True)
    with torch.no_grad():
        o = vm(pixel_values=b["pixel_values"], pixel_attention_mask=b["pixel_attention_mask"], spatial_shapes=b["spatial_shapes"],
               output_hidden_states=True)
        t = gh * gw
        if hook is not None:
            hook.remove()
            _, w = vm.head.attention(*seen["args"], attn_mask=seen["kwargs"].get("attn_mask"), need_weights=True, average_attn_weights=False)
            pool_attention = w[:, :, 0, :t]
        e = {"pixel_values": unpatchify(b["pixel_values"][0], gh, gw)[None], "last_hidden_state": o.last_hidden_state[:, :t]}
        if o.pooler_output is not None:
            e["pooler_output"] = o.pooler_output
        if isinstance(model, Siglip2Model):
            e["image_embeds"] = model.get_image_features(**b).pooler_output
        if isinstance(model, Siglip2ForImageClassification):
            e["logits"] = model(**b).logits
        if isinstance(model, Siglip2VisionModel):
            if hook is not None:
                e["pool_attention"] = pool_attention
            for i, h in enumerate(o.hidden_states):
                e[f"hidden_state.{i}"] = h[:, :t]
    return {k: v.detach().float().contiguous().clone() for k, v in e.items()}, (gh, gw), b


def run_padded(model, proc, paths, budget):
    """Several images of different grids in one padded batch, as transformers runs it."""
    b = proc(images=[Image.open(p).convert("RGB") for p in paths], max_num_patches=budget, return_tensors="pt")
    vm = model.vision_model if hasattr(model, "vision_model") else model
    seen = {}
    hook = vm.head.attention.register_forward_hook(lambda m, args, kwargs, out: seen.update(args=args, kwargs=kwargs), with_kwargs=True)
    with torch.no_grad():
        o = vm(pixel_values=b["pixel_values"], pixel_attention_mask=b["pixel_attention_mask"], spatial_shapes=b["spatial_shapes"])
        hook.remove()
        _, w = vm.head.attention(*seen["args"], attn_mask=seen["kwargs"].get("attn_mask"), need_weights=True, average_attn_weights=False)
        e = {"last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output, "pool_attention": w[:, :, 0, :]}
        if isinstance(model, Siglip2Model):
            e["image_embeds"] = model.get_image_features(**b).pooler_output
        if isinstance(model, Siglip2ForImageClassification):
            e["logits"] = model(**b).logits
    pixels = {"pixel_values": b["pixel_values"].float().contiguous(), "pixel_attention_mask": b["pixel_attention_mask"].to(torch.int64).contiguous(),
              "spatial_shapes": b["spatial_shapes"].to(torch.int64).contiguous()}
    return {k: v.detach().float().contiguous().clone() for k, v in e.items()}, pixels


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    imgs = images(OUT)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=PATCH, num_patches=64)
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=len(tok), max_position_embeddings=16,
                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, projection_size=32)
    cases = [
        ("siglip2-vision", Siglip2VisionModel, Siglip2VisionConfig(**vision)),
        ("siglip2-classifier", Siglip2ForImageClassification, Siglip2Config(vision_config=dict(vision, num_attention_heads=4), text_config=text, num_labels=5)),
        ("siglip2-model", Siglip2Model, Siglip2Config(vision_config=vision, text_config=text)),
    ]
    for seed, (name, cls, cfg) in enumerate(cases):
        cfg._attn_implementation = "eager"
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        randomize(model, 40 + seed)
        out = os.path.join(OUT, name)
        model.save_pretrained(out, safe_serialization=True)
        proc = Siglip2ImageProcessorPil(patch_size=PATCH, max_num_patches=64)
        proc.save_pretrained(out)
        listed = []
        for file, path in imgs:
            for budget in BUDGETS:
                e, (gh, gw), _ = run(model, proc, path, budget)
                case = f"{os.path.splitext(file)[0]}-{budget}"
                px = e.pop("pixel_values")
                os.makedirs(os.path.join(OUT, "pixels"), exist_ok=True)
                save_file({"pixel_values": px}, os.path.join(OUT, "pixels", f"{case}.safetensors"))
                save_file(e, os.path.join(out, f"expected-{case}.safetensors"))
                listed.append({"case": case, "image": os.path.relpath(path, ROOT), "budget": budget,
                               "size": [int(px.shape[2]), int(px.shape[3])], "grid": [gh, gw]})
        json.dump({"cases": listed}, open(os.path.join(out, "cases.json"), "w"), indent=1)
        padded = [path for file, path in imgs if file != "coffee-crop.png"]
        e, pixels = run_padded(model, proc, padded, 64)
        save_file(pixels, os.path.join(OUT, "pixels", "padded-64.safetensors"))
        save_file(e, os.path.join(out, "expected-padded-64.safetensors"))
        if cls is Siglip2Model:
            for f in ["tokenizer.json", "tokenizer_config.json", "tokens.json"]:
                shutil.copy(os.path.join(TOKENIZER, f), out)
            labels = ["cat", "dog", "cup of coffee", "café ☕", "東京"]
            template = "a photo of a {}."
            texts = [template.format(l) for l in labels]
            ids = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")["input_ids"]
            b = proc(images=[Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB")], return_tensors="pt")
            with torch.no_grad():
                o = model(input_ids=ids, **b)
            save_file({"input_ids": ids.to(torch.int64).contiguous(), "logits_per_image": o.logits_per_image.contiguous(),
                       "probs": torch.sigmoid(o.logits_per_image).contiguous(), "text_embeds": o.text_embeds.contiguous(),
                       "image_embeds": o.image_embeds.contiguous()}, os.path.join(out, "zero-shot.safetensors"))
            json.dump({"labels": labels, "template": template, "image": "tests/fixtures/photos/chelsea.png"},
                      open(os.path.join(out, "zero-shot.json"), "w"), indent=1, ensure_ascii=False)
        print(name, "cases:", len(listed))


if __name__ == "__main__":
    main()
