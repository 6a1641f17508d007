"""SigLIP test checkpoints (random weights) and what `transformers` computes from them, on CPU:
SiglipVisionModel (with its attention-pooling head, and without: vision_use_head=False),
SiglipForImageClassification and SiglipModel, as the hub lays them out (config.json,
model.safetensors, preprocessor_config.json as SiglipImageProcessor writes it).
expected.safetensors holds pixel_values, last_hidden_state (after post_layernorm),
pooler_output (the pooling head's output, where the model has one), image_embeds (SiglipModel:
the pooled features), logits (the classifier) and hidden_state.{i}; expected-40x48.safetensors
at-40x48/expected.safetensors the same for a 40x48 input with
interpolate_pos_encoding=True. For SiglipModel,
text-expected.safetensors holds input_ids (padded to the 16 positions with the pad token, as
SigLIP's processor pads to max_length) and the text tower's last_hidden_state and pooler_output
(the last token through the head), computed without a mask as SigLIP runs.

    python scripts/make_siglip_fixtures.py
"""
import json, os, shutil

import torch
from safetensors.torch import save_file
from transformers import SiglipConfig, SiglipForImageClassification, SiglipModel, SiglipVisionConfig, SiglipVisionModel

from make_clip_fixtures import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "siglip")


def vision_outputs(model, px, interpolate):
    vm = model.vision_model if hasattr(model, "vision_model") else model
    with torch.no_grad():
        o = vm(pixel_values=px, output_hidden_states=True, interpolate_pos_encoding=interpolate)
        e = {"pixel_values": px, "last_hidden_state": o.last_hidden_state}
        if o.pooler_output is not None:
            e["pooler_output"] = o.pooler_output
        if isinstance(model, SiglipModel):
            e["image_embeds"] = model.get_image_features(pixel_values=px, interpolate_pos_encoding=interpolate).pooler_output
        if isinstance(model, SiglipForImageClassification):
            e["logits"] = model(pixel_values=px, interpolate_pos_encoding=interpolate).logits
        for i, h in enumerate(o.hidden_states):
            e[f"hidden_state.{i}"] = h
    return {k: v.detach().float().contiguous().clone() for k, v in e.items()}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=99, max_position_embeddings=16,
                pad_token_id=1, bos_token_id=97, eos_token_id=2, projection_size=24)
    cases = [
        ("siglip-vision", SiglipVisionModel, SiglipVisionConfig(**vision), 2),
        ("siglip-vision-nohead", SiglipVisionModel, SiglipVisionConfig(**dict(vision, hidden_size=48, num_attention_heads=3, vision_use_head=False)), 1),
        ("siglip-classifier", SiglipForImageClassification, SiglipConfig(vision_config=dict(vision, num_attention_heads=4), text_config=text, num_labels=5), 2),
        ("siglip-model", SiglipModel, SiglipConfig(vision_config=vision, text_config=text), 2),
    ]
    for seed, (name, cls, cfg, batch) in enumerate(cases):
        cfg._attn_implementation = "eager"
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        randomize(model, 20 + seed)
        folder = os.path.join(OUT, name)
        model.save_pretrained(folder)
        pre = {"image_processor_type": "SiglipImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32}, "resample": 3,
               "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
               "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": None}
        json.dump(pre, open(os.path.join(folder, "preprocessor_config.json"), "w"), indent=1)
        g = torch.Generator().manual_seed(50 + seed)
        e = vision_outputs(model, torch.randn(batch, 3, 32, 32, generator=g), False)
        save_file(e, os.path.join(folder, "expected.safetensors"))
        e = vision_outputs(model, torch.randn(1, 3, 40, 48, generator=g), True)
        os.makedirs(os.path.join(folder, "at-40x48"))
        save_file(e, os.path.join(folder, "at-40x48", "expected.safetensors"))
        print(f"{name}: {sorted(e)}")
        if isinstance(model, SiglipModel):
            # Words, the end token, then padding to every position (one text fills them all).
            g = torch.Generator().manual_seed(70)
            rows = []
            for n in (3, 9, 15):
                row = torch.randint(3, 97, (n,), generator=g).tolist() + [2]
                rows.append(row + [1] * (16 - len(row)))
            ids = torch.tensor(rows)
            with torch.no_grad():
                t = model.text_model(input_ids=ids)
            te = {"input_ids": ids.to(torch.int64), "last_hidden_state": t.last_hidden_state.float().contiguous().clone(),
                  "pooler_output": t.pooler_output.float().contiguous().clone()}
            save_file(te, os.path.join(folder, "text-expected.safetensors"))
            print(f"{name} text: {sorted(te)}")


if __name__ == "__main__":
    main()
