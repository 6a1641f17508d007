"""Depth Anything test checkpoints (random weights, tiny widths) and what `transformers` computes
from them on CPU, as the hub lays them out (config.json with its `backbone_config`,
model.safetensors, preprocessor_config.json as DPTImageProcessor writes it with Depth Anything's
settings: keep the aspect ratio, a multiple of 14, bicubic, ImageNet mean and std).

Checkpoints (tests/fixtures/depth/<name>/), a DINOv2 backbone of width 32 with 4 layers and 2 heads
(position grid 4x4, so every input interpolates it), neck widths not multiples of 4:
- `depth-anything-v1`: relative depth, out_indices [1, 2, 3, 4], V1's neck (fusion 12, head 5);
- `depth-anything-v2-metric`: metric depth (sigmoid, max_depth 20), out_indices [0, 2, 3, 4]
  (the embeddings' hidden state first), other neck widths.

Each case is one photo through the checkpoint's processor: chelsea.png (451x300, landscape) and a
portrait crop of it (150x220). `<name>/expected-<case>.safetensors` holds `pixel_values`
(1, 3, H, W), the backbone's feature maps `feature.{i}` (1, T, D) after its layer norm (class
token first), `predicted_depth` (1, H, W) and `depth_at_input` (H0, W0): the photo through the PIL
backend, the model, then `post_process_depth_estimation` to the photo's own size. `preprocess.safetensors` holds what
DPTImageProcessorPil (the PIL backend, which tessera's preprocessing follows) makes of each photo
with these settings (`pixel_values.<case>`), and `sizes.json` the output size its
`get_resize_output_image_size` gives many input sizes (keep_aspect_ratio on and off, several
targets and multiples, ties of the half-to-even rounding).

    python scripts/make_depth_fixtures.py
"""
import json
import os
import shutil

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor
from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil, get_resize_output_image_size

from make_clip_fixtures import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "depth")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")

SETTINGS = dict(size={"height": 70, "width": 70}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=Image.BICUBIC,
                do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False)

CHECKPOINTS = {
    "depth-anything-v1": dict(out_indices=[1, 2, 3, 4], depth_estimation_type="relative", max_depth=None,
                              neck_hidden_sizes=[6, 10, 12, 18], fusion_hidden_size=12, head_hidden_size=5),
    "depth-anything-v2-metric": dict(out_indices=[0, 2, 3, 4], depth_estimation_type="metric", max_depth=20,
                                     neck_hidden_sizes=[5, 7, 9, 11], fusion_hidden_size=10, head_hidden_size=3),
}


def images(out):
    chelsea = Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB")
    portrait = chelsea.crop((150, 40, 300, 260))
    portrait.save(os.path.join(out, "portrait-150x220.png"))
    return {"chelsea": chelsea, "portrait": portrait}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    photos = images(OUT)
    for seed, (name, opts) in enumerate(CHECKPOINTS.items()):
        backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, patch_size=14,
                                image_size=56, out_indices=opts["out_indices"], reshape_hidden_states=False,
                                apply_layernorm=True, layerscale_value=1.0)
        kw = {k: v for k, v in opts.items() if k != "out_indices" and v is not None}
        config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14, **kw)
        model = DepthAnythingForDepthEstimation(config).eval()
        randomize(model, 100 + seed)
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        processor = DPTImageProcessor(**SETTINGS)
        processor.save_pretrained(d)
        for case, img in photos.items():
            px = processor(images=img, return_tensors="pt").pixel_values
            with torch.no_grad():
                feats = model.backbone.forward_with_filtered_kwargs(px).feature_maps
                out = model(pixel_values=px)
            e = {"pixel_values": px, "predicted_depth": out.predicted_depth}
            for i, f in enumerate(feats):
                e[f"feature.{i}"] = f
            # From the photo itself through the PIL backend, post-processed to the photo's size
            # (bicubic, as post_process_depth_estimation).
            pil = DPTImageProcessorPil(**SETTINGS)
            px_pil = torch.from_numpy(pil(images=img, return_tensors="np").pixel_values)
            with torch.no_grad():
                raw = model(pixel_values=px_pil)
            e["depth_at_input"] = pil.post_process_depth_estimation(raw, target_sizes=[(img.height, img.width)])[0]["predicted_depth"]
            save_file({k: v.detach().float().contiguous().clone() for k, v in e.items()}, os.path.join(d, f"expected-{case}.safetensors"))
            print(name, case, tuple(px.shape), tuple(out.predicted_depth.shape),
                  float(out.predicted_depth.min()), float(out.predicted_depth.max()))
    pil = DPTImageProcessorPil(**SETTINGS)
    px = {f"pixel_values.{case}": torch.from_numpy(pil(images=img, return_tensors="np").pixel_values).float().contiguous()
          for case, img in photos.items()}
    save_file(px, os.path.join(OUT, "preprocess.safetensors"))
    import numpy as np
    sizes = []
    for (h, w) in [(300, 451), (220, 150), (1, 1), (5, 700), (700, 5), (480, 640), (518, 518), (123, 77), (49, 35), (21, 21), (7, 7)]:
        for target, keep, multiple in [((518, 518), True, 14), ((70, 70), True, 14), ((384, 384), False, 32), ((392, 518), True, 14), ((100, 60), False, 1), ((70, 70), True, 28)]:
            out = get_resize_output_image_size(np.zeros((3, h, w), np.uint8), target, keep, multiple)
            sizes.append({"input": [h, w], "target": list(target), "keep_aspect_ratio": keep, "multiple": multiple, "output": [int(out.height), int(out.width)]})
    with open(os.path.join(OUT, "sizes.json"), "w") as f:
        json.dump(sizes, f)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"chelsea": "../photos/chelsea.png", "portrait": "portrait-150x220.png"}, f, indent=2)


if __name__ == "__main__":
    main()
