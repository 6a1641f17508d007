"""Depth Anything V2 Small's shape with random weights: PyTorch and ONNX Runtime on the CPU with the
same threads, at 518x518 and 518x392 (W x H), for BENCHMARKS.md beside `tessera bench`.

Writes the checkpoint (config.json, model.safetensors, preprocessor_config.json) to OUT so that
tessera runs the same weights:

    python scripts/depth_compare.py OUT [--threads 2] [--runs 10]
    tessera bench --model OUT --device cpu --threads 2 --image-size 518x518
    tessera bench --model OUT --device cpu --threads 2 --image-size 518x392
"""
import argparse
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1.0 + noise if ("norm" in name and name.endswith("weight")) else noise)


def median_ms(f, runs):
    f()
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    backbone = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14, image_size=518,
                            out_indices=[3, 6, 9, 12], reshape_hidden_states=False, apply_layernorm=True, layerscale_value=1.0)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384, patch_size=14, neck_hidden_sizes=[48, 96, 192, 384],
                                 fusion_hidden_size=64, head_hidden_size=32, depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config).eval()
    randomize(model, 0)
    model.save_pretrained(a.out, safe_serialization=True)
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=Image.BICUBIC,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False).save_pretrained(a.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"Depth Anything V2 Small shape, {params / 1e6:.1f} M parameters, {a.threads} threads, median of {a.runs}")

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    for (w, h) in [(518, 518), (518, 392)]:
        px = torch.randn(1, 3, h, w)
        # One ONNX graph per size: the head's resize to the input's size is traced as constants.
        onnx_path = os.path.join(a.out, f"model-{w}x{h}.onnx")
        torch.onnx.export(model, (px,), onnx_path, input_names=["pixel_values"], output_names=["predicted_depth"], opset_version=18, dynamo=False)
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ref = model(pixel_values=px).predicted_depth.numpy()
            pt = median_ms(lambda: model(pixel_values=px), a.runs)
        got = sess.run(None, {"pixel_values": px.numpy()})[0]
        ox = median_ms(lambda: sess.run(None, {"pixel_values": px.numpy()}), a.runs)
        print(f"{w}x{h}: PyTorch {torch.__version__} {pt:.1f} ms, ONNX Runtime {ort.__version__} {ox:.1f} ms "
              f"(depth {float(ref.min()):.3g} .. {float(ref.max()):.3g}, max |ORT - PyTorch| {float(np.abs(got - ref).max()):.1e})")


if __name__ == "__main__":
    main()
