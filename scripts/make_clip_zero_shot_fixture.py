"""A small CLIPModel with a real CLIP tokenizer pipeline, for tokenization and zero-shot tests.

The tokenizer is transformers' CLIPTokenizer (byte-level BPE, NFC + whitespace + lowercase
normalizer, CLIP's split pattern, start/end tokens) with a vocabulary and merges trained here on a
small corpus with the `tokenizers` trainer (CLIP's own vocabulary is 49408 tokens; the pipeline is
what is tested). Writes tests/fixtures/clip/clip-zero-shot/: the checkpoint (random weights) with
tokenizer.json, tokens.json (strings, hostile ones included, and the ids CLIPTokenizer gives them,
truncated to 77 tokens) and zero-shot.safetensors (chelsea.png through CLIPImageProcessor, PIL
backend; the labels in zero-shot.json through the template; logits_per_image, text_embeds and
image_embeds from CLIPModel).

    python scripts/make_clip_zero_shot_fixture.py
"""
import json, os, shutil

import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "clip", "clip-zero-shot")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")

CORPUS = [
    "a photo of a cat", "a photo of a dog", "a picture of a tabby cat sitting on a table",
    "a cup of coffee on a wooden table", "an espresso in a white cup", "the quick brown fox jumps over the lazy dog",
    "café crème, naïve façade, über große straße", "東京の猫と犬", "кошка и собака", "1234567890 numbers and 3.14",
    "it's what you're doing, we'll see, they've gone, I'm here, he'd go", "emoji 🐱🐶☕ and symbols #$%&*!?",
] * 20

STRINGS = [
    "", " ", "a photo of a cat", "A PHOTO   OF\ta\nDOG", "café ☕", "東京の猫", "кошка", "it's a cat's toy",
    "🐱🐶🐱🐶", "<|startoftext|>hello<|endoftext|>", "\u0000\u0007control\u001b[31m", "e\u0301 vs \u00e9 (NFC)",
    "word " * 100, "x" * 300, "123 456.789", "mixed Ελληνικά и русский and 中文 text",
]
LABELS = ["cat", "dog", "cup of coffee", "café ☕", "東京"]
TEMPLATE = "a photo of a {}."


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    # Train a small vocabulary with CLIP's pipeline, then build transformers' CLIPTokenizer from it.
    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|startoftext|>", "<|endoftext|>"], end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    model_json = json.loads(tok.to_str())["model"]
    vocab, merges = model_json["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    clip_tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    clip_tok.save_pretrained(OUT)
    clip_tok = CLIPTokenizer.from_pretrained(OUT)
    bos, eos = clip_tok.bos_token_id, clip_tok.eos_token_id

    cfg = CLIPConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=len(clip_tok),
                         max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        projection_dim=16)
    torch.manual_seed(7)
    model = CLIPModel(cfg).eval()
    model.save_pretrained(OUT)
    pre = CLIPImageProcessor(size=36, crop_size=32, do_center_crop=True, resample=3)
    pre_json = pre.to_dict()
    pre_json = {k: pre_json[k] for k in ["do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                                         "do_normalize", "image_mean", "image_std", "do_convert_rgb"]}
    pre_json["image_processor_type"] = "CLIPImageProcessor"
    json.dump(pre_json, open(os.path.join(OUT, "preprocessor_config.json"), "w"), indent=1)

    ids = [clip_tok(s, truncation=True, max_length=77)["input_ids"] for s in STRINGS]
    truncated = [len(clip_tok(s)["input_ids"]) > 77 for s in STRINGS]
    json.dump({"strings": STRINGS, "ids": ids, "truncated": truncated}, open(os.path.join(OUT, "tokens.json"), "w"), indent=1, ensure_ascii=False)

    from transformers import AutoImageProcessor
    proc = AutoImageProcessor.from_pretrained(OUT, backend="pil")
    px = proc(images=Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB"), return_tensors="pt")["pixel_values"]
    texts = [TEMPLATE.format(l) for l in LABELS]
    enc = clip_tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=px)
    save_file({"pixel_values": px.contiguous(), "logits_per_image": out.logits_per_image.contiguous().clone(),
               "text_embeds": out.text_embeds.contiguous().clone(), "image_embeds": out.image_embeds.contiguous().clone()},
              os.path.join(OUT, "zero-shot.safetensors"))
    json.dump({"labels": LABELS, "template": TEMPLATE, "image": "tests/fixtures/photos/chelsea.png"},
              open(os.path.join(OUT, "zero-shot.json"), "w"), indent=1, ensure_ascii=False)
    print("vocab", len(clip_tok), "bos", bos, "eos", eos, "files", sorted(os.listdir(OUT)))
    print("logits", out.logits_per_image)


if __name__ == "__main__":
    main()
