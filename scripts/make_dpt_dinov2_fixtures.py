"""DPT over a DINOv2 backbone (`DPTForDepthEstimation` with a `dinov2` `backbone_config`,
facebook/dpt-dinov2-*'s layout; random weights, tiny widths) and what `transformers` computes from
them on CPU, as the hub lays them out: config.json, model.safetensors, and preprocessor_config.json
as those checkpoints' DPTImageProcessor (no resize, no rescale, ImageNet's mean and std in 0..255
units, zero padding to a multiple of the patch).

Checkpoints (tests/fixtures/dpt-dinov2/<name>/), a DINOv2 of width 32 with 4 layers and 2 heads,
patch 7, position grid 4x4 (every input interpolates it, bicubically as DINOv2 does):
- `dpt-dinov2`: as facebook/dpt-dinov2-* are built: the backbone's stages without its final norm
  (`apply_layernorm: false`), readout "project", no fusion residual biases, `add_projection` (a
  3x3 convolution and a ReLU before the head; transformers hard-codes it at 256 channels, so the
  fixture's narrow fusion width gets the same convolution at its own width), and the first fusion
  layer's unused residual unit left out of the weights file as in those checkpoints;
- `dpt-dinov2-normed`: the stages through the final norm, readout "add", stages named by
  `out_features` alone (config.json without `out_indices`), head_in_index -2.

Cases: two photos small enough to run at their own sizes (61x40 and 33x47, so both pad: 63x42,
a 6x9 grid; 35x49, 7x5), saved beside the checkpoints as `photo-<case>.png`.
`<name>/expected-<case>.safetensors` holds `pixel_values`, the backbone's hidden states `hidden.{i}`
(1, T, D) (0: the embeddings; as the layers leave them), `predicted_depth` (1, H', W') and
`depth_at_input` (H0, W0): the photo through the PIL backend, the model, then
`post_process_depth_estimation` to the photo's size.

    python scripts/make_dpt_dinov2_fixtures.py
"""
import json
import os
import shutil

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import Dinov2Config, DPTConfig, DPTForDepthEstimation, DPTImageProcessor
from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

from make_clip_fixtures import randomize
from make_dpt_fixtures import depth_at_input, run_case, save_expected

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "dpt-dinov2")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")

PATCH = 7
SETTINGS = dict(do_resize=False, do_rescale=False, do_pad=True, size_divisor=PATCH, do_normalize=True,
                image_mean=[123.675, 116.28, 103.53], image_std=[58.395, 57.12, 57.375])

CHECKPOINTS = {
    "dpt-dinov2": dict(backbone=dict(out_indices=[1, 2, 3, 4], apply_layernorm=False),
                       dpt=dict(readout_type="project", neck_hidden_sizes=[6, 10, 12, 18], fusion_hidden_size=12,
                                use_bias_in_fusion_residual=False, add_projection=True),
                       drop_first_residual=True),
    "dpt-dinov2-normed": dict(backbone=dict(out_features=["stage1", "stage2", "stage3", "stage4"], apply_layernorm=True),
                              dpt=dict(readout_type="add", neck_hidden_sizes=[5, 7, 9, 11], fusion_hidden_size=10,
                                       head_in_index=-2),
                              drop_out_indices=True),
}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    chelsea = Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB")
    photos = {
        "wide": chelsea.resize((61, 40), Image.BICUBIC),
        "tall": chelsea.crop((150, 40, 300, 260)).resize((33, 47), Image.BICUBIC),
    }
    for case, img in photos.items():
        img.save(os.path.join(OUT, f"photo-{case}.png"))
    for seed, (name, opts) in enumerate(CHECKPOINTS.items()):
        backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, patch_size=PATCH,
                                image_size=4 * PATCH, reshape_hidden_states=False, **opts["backbone"])
        config = DPTConfig(backbone_config=backbone, is_hybrid=False, reassemble_factors=[4, 2, 1, 0.5],
                           architectures=["DPTForDepthEstimation"], **opts["dpt"])
        model = DPTForDepthEstimation(config).eval()
        if config.add_projection:
            f = config.fusion_hidden_size
            model.head.projection = torch.nn.Conv2d(f, f, kernel_size=3, stride=1, padding=1)
        randomize(model, 400 + seed)
        # The last convolution scaled so that the depths are about 1 (random heads reach hundreds),
        # so that a tolerance of 1e-4 is one on the values themselves.
        processor = DPTImageProcessor(**SETTINGS)
        with torch.no_grad():
            px = processor(images=photos["wide"], return_tensors="pt").pixel_values
            top = float(model(pixel_values=px).predicted_depth.max())
            last = model.head.head[4]
            last.weight.mul_(2.0 / top)
            last.bias.mul_(2.0 / top)
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        processor.save_pretrained(d)
        if opts.get("drop_first_residual"):
            path = os.path.join(d, "model.safetensors")
            tensors = load_file(path)
            kept = {k: v for k, v in tensors.items() if not k.startswith("neck.fusion_stage.layers.0.residual_layer1.")}
            assert len(kept) == len(tensors) - 2 * (1 if not config.use_bias_in_fusion_residual else 2)
            save_file(kept, path, metadata={"format": "pt"})
        if opts.get("drop_out_indices"):
            path = os.path.join(d, "config.json")
            with open(path) as fh:
                cfg = json.load(fh)
            del cfg["backbone_config"]["out_indices"]
            with open(path, "w") as fh:
                json.dump(cfg, fh, indent=2)
        for case, img in photos.items():
            e = run_case(model, processor(images=img, return_tensors="pt").pixel_values)
            e["depth_at_input"] = depth_at_input(model, DPTImageProcessorPil(**SETTINGS), img)
            save_expected(e, os.path.join(d, f"expected-{case}.safetensors"), f"{name} {case}")


if __name__ == "__main__":
    main()
