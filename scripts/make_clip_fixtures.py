"""CLIP image-tower test checkpoints (random weights) and what `transformers` computes from them,
on CPU: CLIPVisionModel, CLIPVisionModelWithProjection and CLIPModel (its image side), as the hub
lays them out (config.json, model.safetensors, preprocessor_config.json written by
CLIPImageProcessor). expected.safetensors holds pixel_values, last_hidden_state (the encoder's
output), pooler_output (the class token after post_layernorm), image_embeds (that projected, where
the model has a projection), hidden_state.{i} (after pre_layrnorm, then each layer) and
cls_attention (last layer, class token over the patches). For CLIPModel, text-expected.safetensors
holds input_ids (three lengths, padded) and the text tower's last_hidden_state, pooler_output (at
the end-of-text token) and text_embeds (projected), computed without a padding mask.

    python scripts/make_clip_fixtures.py
"""
import json, os, shutil

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "clip")


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.2
            if ("norm" in name or "layrnorm" in name) and name.endswith("weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)


def vision_outputs(model, px):
    vm = getattr(model, "vision_model", model)
    with torch.no_grad():
        o = vm(pixel_values=px, output_hidden_states=True, output_attentions=True)
        e = {"pixel_values": px, "last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output}
        if hasattr(model, "visual_projection"):
            e["image_embeds"] = model.visual_projection(o.pooler_output)
        for i, h in enumerate(o.hidden_states):
            e[f"hidden_state.{i}"] = h
        e["cls_attention"] = o.attentions[-1][:, :, 0, 1:]
    return {k: v.detach().float().contiguous().clone() for k, v in e.items()}


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    cases = [
        ("clip-vision", CLIPVisionModel, CLIPVisionConfig(**vision), 2),
        ("clip-vision-projection", CLIPVisionModelWithProjection, CLIPVisionConfig(**dict(vision, hidden_size=48, num_attention_heads=3, projection_dim=24)), 1),
        ("clip-model", CLIPModel, CLIPConfig(
            vision_config=dict(vision, hidden_act="gelu"),
            text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=99, max_position_embeddings=16, bos_token_id=97, eos_token_id=98, pad_token_id=0),
            projection_dim=16), 2),
    ]
    for seed, (name, cls, cfg, batch) in enumerate(cases):
        cfg._attn_implementation = "eager"
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        randomize(model, 10 + seed)
        folder = os.path.join(OUT, name)
        model.save_pretrained(folder)
        # As the hub's CLIP repos carry it: a single size, read as the shortest edge.
        pre = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": 36, "resample": 3,
               "do_center_crop": True, "crop_size": 32, "do_rescale": True, "rescale_factor": 1 / 255,
               "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
               "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True}
        json.dump(pre, open(os.path.join(folder, "preprocessor_config.json"), "w"), indent=1)
        px = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(40 + seed))
        e = vision_outputs(model, px)
        save_file(e, os.path.join(folder, "expected.safetensors"))
        print(f"{name}: {sorted(e)}")
        if hasattr(model, "text_model"):
            # Token ids as CLIP's tokenizer lays them out: start, words, end, padding; three
            # lengths, one filling every position.
            g = torch.Generator().manual_seed(60)
            rows = []
            for n in (3, 9, 14):
                words = torch.randint(1, 97, (n,), generator=g).tolist()
                row = [97] + words + [98]
                rows.append(row + [0] * (16 - len(row)))
            ids = torch.tensor(rows)
            with torch.no_grad():
                t = model.text_model(input_ids=ids)
                te = {"input_ids": ids.to(torch.int64), "last_hidden_state": t.last_hidden_state, "pooler_output": t.pooler_output,
                      "text_embeds": model.text_projection(t.pooler_output)}
            te = {k: (v.contiguous().clone() if k == "input_ids" else v.detach().float().contiguous().clone()) for k, v in te.items()}
            save_file(te, os.path.join(folder, "text-expected.safetensors"))
            print(f"{name} text: {sorted(te)}")


if __name__ == "__main__":
    main()
