"""DPT test checkpoints (`DPTForDepthEstimation` with a plain ViT backbone, Intel/dpt-large's layout;
random weights, tiny widths) and what `transformers` computes from them on CPU, as the hub lays
them out (config.json, model.safetensors, preprocessor_config.json as DPTImageProcessor writes it
with Intel/dpt-large's settings: a fixed square size, no aspect ratio kept, bicubic, mean and std
0.5).

Checkpoints (tests/fixtures/dpt/<name>/), a ViT of width 32 with 4 layers and 2 heads, patch 8,
position grid 4x4 (so every input interpolates it, bilinearly as DPT does), neck widths not
multiples of 4, the last convolution scaled so that the depths are about 1:
- `dpt-project`: readout "project" (the class token appended to each patch, a linear layer and
  GELU), backbone_out_indices [0, 1, 2, 3], factors [4, 2, 1, 0.5];
- `dpt-add-bn`: readout "add", batch norm in the fusion's residual units (no conv bias; the
  running statistics random), backbone_out_indices [3, 0, 2, 1] (transformers keeps the hidden
  states in layer order whatever the list's order), factors [2, 1, 0.5, 0.25], head_in_index 2;
- `dpt-ignore`: readout "ignore", the fusion's conv biases on beside batch norm.

Cases: chelsea.png (451x300) and the portrait crop of it (150x220), both through the checkpoint's
processor (48x48: a 6x6 grid), and `odd`: the portrait at 40x40 (a 5x5 grid: the strided
convolution's odd input, the fusion's residual resize). `<name>/expected-<case>.safetensors` holds
`pixel_values`, the backbone's hidden states `hidden.{i}` (1, T, D) (0: the embeddings), and
`predicted_depth` (1, H', W'); for the photos also `depth_at_input` (H0, W0): the photo through the
PIL backend, the model, then `post_process_depth_estimation` to the photo's size.

    python scripts/make_dpt_fixtures.py
"""
import json
import os
import shutil

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor
from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

from make_clip_fixtures import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "dpt")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")

SETTINGS = dict(size={"height": 48, "width": 48}, keep_aspect_ratio=False, ensure_multiple_of=1, resample=Image.BICUBIC,
                do_normalize=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_pad=False)

CHECKPOINTS = {
    "dpt-project": dict(readout_type="project", backbone_out_indices=[0, 1, 2, 3], reassemble_factors=[4, 2, 1, 0.5],
                        neck_hidden_sizes=[6, 10, 12, 18], fusion_hidden_size=12),
    "dpt-add-bn": dict(readout_type="add", backbone_out_indices=[3, 0, 2, 1], reassemble_factors=[2, 1, 0.5, 0.25],
                       neck_hidden_sizes=[5, 7, 9, 11], fusion_hidden_size=10, head_in_index=2,
                       use_batch_norm_in_fusion_residual=True),
    "dpt-ignore": dict(readout_type="ignore", backbone_out_indices=[1, 2, 3, 0], reassemble_factors=[4, 2, 1, 0.5],
                       neck_hidden_sizes=[3, 5, 6, 9], fusion_hidden_size=6,
                       use_batch_norm_in_fusion_residual=True, use_bias_in_fusion_residual=True),
}


def depth_at_input(model, pil, img):
    """The photo through the PIL backend `pil`, the model, and `post_process_depth_estimation` to
    the photo's size (bicubic)."""
    px = torch.from_numpy(pil(images=img, return_tensors="np").pixel_values)
    with torch.no_grad():
        raw = model(pixel_values=px)
    return pil.post_process_depth_estimation(raw, target_sizes=[(img.height, img.width)])[0]["predicted_depth"]


def run_case(model, px):
    """`pixel_values`, every hidden state `hidden.{i}` and `predicted_depth` of one input."""
    with torch.no_grad():
        out = model(pixel_values=px, output_hidden_states=True)
    e = {"pixel_values": px, "predicted_depth": out.predicted_depth}
    for i, h in enumerate(out.hidden_states):
        e[f"hidden.{i}"] = h
    return e


def save_expected(e, path, label):
    save_file({k: v.detach().float().contiguous().clone() for k, v in e.items()}, path)
    d = e["predicted_depth"]
    print(label, tuple(e["pixel_values"].shape), tuple(d.shape), float(d.min()), float(d.max()))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    chelsea = Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB")
    portrait = chelsea.crop((150, 40, 300, 260))
    photos = {"chelsea": chelsea, "portrait": portrait}
    for seed, (name, opts) in enumerate(CHECKPOINTS.items()):
        config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, patch_size=8,
                           image_size=32, architectures=["DPTForDepthEstimation"], **opts)
        model = DPTForDepthEstimation(config).eval()
        randomize(model, 200 + seed)
        g = torch.Generator().manual_seed(300 + seed)
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n.endswith("running_mean"):
                    b.copy_(torch.randn(b.shape, generator=g) * 0.3)
                elif n.endswith("running_var"):
                    b.copy_(0.5 + torch.rand(b.shape, generator=g))
        # The last convolution scaled so that the depths are about 1 (random heads reach hundreds),
        # so that a tolerance of 1e-4 is one on the values themselves.
        with torch.no_grad():
            px = DPTImageProcessor(**SETTINGS)(images=chelsea, return_tensors="pt").pixel_values
            top = float(model(pixel_values=px).predicted_depth.max())
            last = model.head.head[4]
            last.weight.mul_(2.0 / top)
            last.bias.mul_(2.0 / top)
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        processor = DPTImageProcessor(**SETTINGS)
        processor.save_pretrained(d)
        odd = DPTImageProcessor(**{**SETTINGS, "size": {"height": 40, "width": 40}})
        cases = {case: (img, processor) for case, img in photos.items()}
        cases["odd"] = (portrait, odd)
        for case, (img, proc) in cases.items():
            e = run_case(model, proc(images=img, return_tensors="pt").pixel_values)
            if case in photos:
                e["depth_at_input"] = depth_at_input(model, DPTImageProcessorPil(**SETTINGS), img)
            save_expected(e, os.path.join(d, f"expected-{case}.safetensors"), f"{name} {case}")
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"chelsea": "../photos/chelsea.png", "portrait": "../depth/portrait-150x220.png"}, f, indent=2)


if __name__ == "__main__":
    main()
