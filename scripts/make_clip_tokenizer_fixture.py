"""CLIP's real tokenizer (49408 tokens) and the ids `transformers`' CLIPTokenizer gives the
hostile strings of tests/fixtures/clip/clip-zero-shot/tokens.json, for the tokenization test.

The vocabulary and merges are built offline from the BPE merge list that the `open-clip-torch`
package ships (bpe_simple_vocab_16e6.txt.gz): the 256 byte symbols, the same with the end-of-word
marker, one token per merge, then the start and end tokens. tokenizer.json is stored gzipped.

    pip install open-clip-torch && python scripts/make_clip_tokenizer_fixture.py
"""
import gzip, json, os

import open_clip
from transformers import CLIPTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "clip", "openai-tokenizer")


def byte_symbols():
    """GPT-2's reversible byte-to-character map (printable bytes as themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return [chr(c) for c in chars]


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges = [tuple(l.split()) for l in lines[1:49152 - 256 - 2 + 1]]
    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=77)
    tmp = os.path.join(OUT, "tmp")
    tok.save_pretrained(tmp)
    tok = CLIPTokenizer.from_pretrained(tmp)
    raw = open(os.path.join(tmp, "tokenizer.json"), "rb").read()
    with gzip.open(os.path.join(OUT, "tokenizer.json.gz"), "wb", compresslevel=9) as f:
        f.write(raw)
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    strings = json.load(open(os.path.join(ROOT, "tests", "fixtures", "clip", "clip-zero-shot", "tokens.json")))["strings"]
    strings += ["a photo of a cat", "A diagram of the Eiffel Tower at night!", "naïve café façade — über"]
    ids = [tok(s, truncation=True, max_length=77)["input_ids"] for s in strings]
    truncated = [len(tok(s)["input_ids"]) > 77 for s in strings]
    json.dump({"strings": strings, "ids": ids, "truncated": truncated}, open(os.path.join(OUT, "tokens.json"), "w"), indent=1, ensure_ascii=False)
    print(len(tok), "tokens;", "a photo of a cat ->", ids[-3])


if __name__ == "__main__":
    main()
