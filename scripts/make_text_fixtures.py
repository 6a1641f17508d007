"""Checkpoints of a text tower alone (random weights) and what `transformers` computes from them:
CLIPTextModel, CLIPTextModelWithProjection (with the tokenizer of tests/fixtures/clip/clip-zero-shot,
so that texts can be embedded end to end) and SiglipTextModel. Writes tests/fixtures/text/<name>/
with config.json, model.safetensors and text-expected.safetensors: input_ids (three lengths,
padded as the model's processor pads) and the tower's last_hidden_state, pooler_output and, where
the model projects, text_embeds. For clip-text-projection, expected-texts.json holds texts and
their unit-length text embeddings (tokenized by transformers' CLIPTokenizer, padded to the
longest).

    python scripts/make_text_fixtures.py   (after make_clip_zero_shot_fixture.py)
"""
import json, os, shutil

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, SiglipTextConfig, SiglipTextModel

from make_clip_fixtures import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "text")
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "clip", "clip-zero-shot")
TEXTS = ["a photo of a cat", "a cup of coffee on a wooden table", "東京の猫 🐱"]


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tok = CLIPTokenizer.from_pretrained(TOKENIZER)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    clip = dict(small, vocab_size=len(tok), max_position_embeddings=20, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    cases = [
        ("clip-text", CLIPTextModel, CLIPTextConfig(**clip)),
        ("clip-text-projection", CLIPTextModelWithProjection, CLIPTextConfig(**dict(clip, projection_dim=24))),
        ("siglip-text", SiglipTextModel, SiglipTextConfig(**dict(small, vocab_size=99, max_position_embeddings=16, pad_token_id=1, eos_token_id=2, projection_size=24))),
    ]
    for seed, (name, cls, cfg) in enumerate(cases):
        cfg._attn_implementation = "eager"
        torch.manual_seed(seed)
        model = cls(cfg).eval()
        randomize(model, 80 + seed)
        folder = os.path.join(OUT, name)
        model.save_pretrained(folder)
        positions = cfg.max_position_embeddings
        g = torch.Generator().manual_seed(90 + seed)
        rows = []
        for n in (2, 7, positions - 2):
            words = torch.randint(3, min(cfg.vocab_size, 90), (n,), generator=g).tolist()
            if name.startswith("clip"):
                row = [tok.bos_token_id] + words + [tok.eos_token_id]
                rows.append(row + [tok.eos_token_id] * (positions - len(row)))
            else:
                row = words + [2]
                rows.append(row + [1] * (positions - len(row)))
        ids = torch.tensor(rows)
        with torch.no_grad():
            o = model(input_ids=ids)
        e = {"input_ids": ids.to(torch.int64), "last_hidden_state": o.last_hidden_state}
        if isinstance(model, CLIPTextModelWithProjection):
            e["text_embeds"] = o.text_embeds
        else:
            e["pooler_output"] = o.pooler_output
        save_file({k: v.detach().contiguous().clone() for k, v in e.items()}, os.path.join(folder, "text-expected.safetensors"))
        if name == "clip-text-projection":
            tok.save_pretrained(folder)
            enc = tok(TEXTS, padding=True, return_tensors="pt")
            with torch.no_grad():
                emb = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).text_embeds
            emb = emb / emb.norm(dim=-1, keepdim=True)
            json.dump({"texts": TEXTS, "embeddings": emb.tolist()}, open(os.path.join(folder, "expected-texts.json"), "w"), indent=1, ensure_ascii=False)
        print(name, sorted(os.listdir(folder)), sorted(e))


if __name__ == "__main__":
    main()
