"""Small SiglipModels with SigLIP's two tokenizer pipelines, for tokenization and zero-shot tests.

- tests/fixtures/siglip-zero-shot/: transformers' Siglip2Tokenizer (Gemma's byte-fallback BPE with
  SigLIP 2's lowercasing; SigLIP 2 checkpoints on the hub carry such a tokenizer.json) with a
  vocabulary and merges trained here with the `tokenizers` trainer.
- tests/fixtures/siglip-spm-zero-shot/: transformers' SiglipTokenizer over a SentencePiece unigram
  model (spiece.model, nmt_nfkc normalization, as SigLIP's hub checkpoints ship it, without a
  tokenizer.json) trained here with the `sentencepiece` trainer (pip install sentencepiece).

Each holds the checkpoint (random weights), tokens.json (strings, hostile ones included, and the
ids the tokenizer gives them with truncation to the model's 16 positions), and
zero-shot.safetensors (chelsea.png through SiglipImageProcessor, PIL backend; the labels in
zero-shot.json through the template, padded to max_length as SigLIP's processor does;
logits_per_image, their sigmoids, text_embeds and image_embeds from SiglipModel).

    python scripts/make_siglip_zero_shot_fixture.py
"""
import json, os, shutil

import torch
from PIL import Image
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoImageProcessor, AutoTokenizer, SiglipConfig, SiglipImageProcessor, SiglipModel
from transformers.models.siglip2.tokenization_siglip2 import Siglip2Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "siglip-zero-shot")
OUT_SPM = os.path.join(ROOT, "tests", "fixtures", "siglip-spm-zero-shot")
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
POSITIONS = 16

CORPUS = [
    "a photo of a cat", "a photo of a dog", "this is a photo of a tabby cat sitting on a table",
    "a cup of coffee on a wooden table", "an espresso in a white cup", "the quick brown fox jumps over the lazy dog",
    "café crème, naïve façade", "東京の猫と犬", "кошка и собака", "1234567890 numbers and 3.14",
    "ο δρόμος της πόλης σας", "istanbul i̇stanbul",
] * 20

STRINGS = [
    "", " ", "a photo of a cat", "A PHOTO   OF\ta\nDOG", "café ☕", "東京の猫", "кошка", "it's a cat's toy",
    "🐱🐶🐱🐶", "<bos>hello<eos>", "\u0000\u0007control\u001b[31m", "e\u0301 vs \u00e9", "word " * 40,
    "mixed Ελληνικά и русский and 中文 text", "Hello, World! (yes) -- 3.14", "a\u3000b\u00a0c\u001fd", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
    "tabs\t\tand   spaces  ", "  leading space", "a photo</s>of a cat", "UPPER Case ÀÉÎ", "ΟΔΟΣ ΚΑΙ ΔΡΟΜΟΣ.", "İSTANBUL ǅ ß ẞ",
]
LABELS = ["cat", "dog", "cup of coffee", "café ☕", "東京"]
TEMPLATE = "this is a photo of {}."


def siglip2_tokenizer(out):
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    bytes_ = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=450, special_tokens=specials + bytes_, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    model_json = json.loads(tok.to_str())["model"]
    vocab, merges = model_json["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    sig_tok = Siglip2Tokenizer(vocab=vocab, merges=merges, model_max_length=POSITIONS)
    sig_tok.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


def siglip_spm_tokenizer(out):
    import io
    import sentencepiece as spm
    from transformers import SiglipTokenizer
    import random
    rng = random.Random(0)
    words = " ".join(CORPUS[:10]).replace(",", "").split() + ["picture", "sitting", "running", "mountain", "beach", "sunset", "bicycle",
                                                            "kitchen", "window", "painting", "photograph", "children", "playing"]
    corpus = CORPUS + [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buf, vocab_size=200, hard_vocab_limit=False, model_type="unigram",
                                   normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=1.0, minloglevel=2)
    path = os.path.join(out, "spiece.model")
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    tok = SiglipTokenizer(vocab_file=path, model_max_length=POSITIONS)
    tok.save_pretrained(out)
    precompiled_tokenizer(path, os.path.join(out, "precompiled"))
    return SiglipTokenizer.from_pretrained(out)


def precompiled_tokenizer(spm_path, out):
    """The same unigram model as a tokenizer.json with SentencePiece's character map as a
    `Precompiled` normalizer (the form files converted from SentencePiece take), and the ids the
    `tokenizers` library gives the strings with it: for the test that a damaged character map in a
    tokenizer.json is refused rather than crashing."""
    import sentencepiece.sentencepiece_model_pb2 as pb
    from tokenizers import Regex
    m = pb.ModelProto()
    m.ParseFromString(open(spm_path, "rb").read())
    unk = next(i for i, p in enumerate(m.pieces) if p.type == 2)
    tok = Tokenizer(models.Unigram([(p.piece, p.score) for p in m.pieces], unk_id=unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(m.normalizer_spec.precompiled_charsmap), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    os.makedirs(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    ids = [tok.encode(s).ids for s in STRINGS]
    json.dump({"strings": STRINGS, "ids": ids}, open(os.path.join(out, "tokens.json"), "w"), indent=1, ensure_ascii=False)


def build(out, make_tokenizer, seed):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    sig_tok = make_tokenizer(out)
    print(type(sig_tok).__name__, "vocab", len(sig_tok), "pad", sig_tok.pad_token_id, "eos", sig_tok.eos_token_id)

    cfg = SiglipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=len(sig_tok),
                         max_position_embeddings=POSITIONS, pad_token_id=sig_tok.pad_token_id, eos_token_id=sig_tok.eos_token_id,
                         bos_token_id=sig_tok.bos_token_id, projection_size=32))
    torch.manual_seed(seed)
    model = SiglipModel(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-1.5)
    model.save_pretrained(out)
    pre = {"image_processor_type": "SiglipImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32}, "resample": 3,
           "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    json.dump(pre, open(os.path.join(out, "preprocessor_config.json"), "w"), indent=1)

    ids = [sig_tok(s, truncation=True, max_length=POSITIONS)["input_ids"] for s in STRINGS]
    truncated = [len(sig_tok(s)["input_ids"]) > POSITIONS for s in STRINGS]
    json.dump({"strings": STRINGS, "ids": ids, "truncated": truncated, "max_length": POSITIONS}, open(os.path.join(out, "tokens.json"), "w"), indent=1, ensure_ascii=False)

    proc = AutoImageProcessor.from_pretrained(out, backend="pil")
    px = proc(images=Image.open(os.path.join(PHOTOS, "chelsea.png")).convert("RGB"), return_tensors="pt")["pixel_values"]
    texts = [TEMPLATE.format(l) for l in LABELS]
    enc = sig_tok(texts, padding="max_length", max_length=POSITIONS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        res = model(input_ids=enc["input_ids"], pixel_values=px)
    save_file({"pixel_values": px.contiguous(), "input_ids": enc["input_ids"].to(torch.int64).contiguous(),
               "logits_per_image": res.logits_per_image.contiguous().clone(), "probs": torch.sigmoid(res.logits_per_image).contiguous().clone(),
               "text_embeds": res.text_embeds.contiguous().clone(), "image_embeds": res.image_embeds.contiguous().clone()},
              os.path.join(out, "zero-shot.safetensors"))
    json.dump({"labels": LABELS, "template": TEMPLATE, "image": "tests/fixtures/photos/chelsea.png"},
              open(os.path.join(out, "zero-shot.json"), "w"), indent=1, ensure_ascii=False)
    print("files", sorted(os.listdir(out)))
    print("ids", enc["input_ids"][0].tolist())
    print("logits", res.logits_per_image)


def main():
    build(OUT, siglip2_tokenizer, 11)
    build(OUT_SPM, siglip_spm_tokenizer, 12)


if __name__ == "__main__":
    main()
