"""Writes the committed corpus of hostile inputs (tests/fixtures/hostile) and its manifest.

Every file replaces one file of the vit-classifier test checkpoint (weights, config,
preprocessor config) or is an image given to that model. The manifest names the error kind
tessera must return (`ok` where the input is valid and must decode) and a string the message
must contain. tests/hostile.rs checks it natively, tests/browser/api.test.mjs through the wasm
API. Standard library only:

    python3 scripts/make_hostile.py
"""
import json, os, struct, zlib

ROOT = os.path.join(os.path.dirname(__file__), "..")
BASE = os.path.join(ROOT, "tests/fixtures/vit-classifier")
OUT = os.path.join(ROOT, "tests/fixtures/hostile")


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_st(header, body):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []

    def add(name, role, data, kind, needle, preprocessor=None):
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        case = {"file": name, "role": role, "kind": kind, "needle": needle}
        if preprocessor:
            case["preprocessor"] = preprocessor
        cases.append(case)

    weights = open(os.path.join(BASE, "model.safetensors"), "rb").read()
    header, body = read_st(os.path.join(BASE, "model.safetensors"))
    meta = {k: v for k, v in header.items() if k != "__metadata__"}
    names = sorted(meta, key=lambda k: meta[k]["data_offsets"][0])
    first, second = names[0], names[1]

    # Truncations and a header length beyond the file.
    for cut in [0, 5, 8, 100, len(weights) // 2, len(weights) - 1]:
        add(f"weights-truncated-{cut}.safetensors", "weights", weights[:cut], "model", "model.safetensors")
    add("weights-header-length-2^40.safetensors", "weights", struct.pack("<Q", 1 << 40) + weights[8:], "model", "model.safetensors")

    def variant(name, edit, needle):
        h = json.loads(json.dumps(header))
        b = edit(h)
        add(name, "weights", write_st(h, body if b is None else b), "model", needle)

    def past_end(h):
        last = names[-1]
        h[last]["data_offsets"][1] += 4096
    variant("weights-offset-past-end.safetensors", past_end, "model.safetensors")

    def overlap(h):
        # The second tensor starts inside the first.
        a0, a1 = h[second]["data_offsets"]
        h[second]["data_offsets"] = [a0 - 4, a1 - 4]
    variant("weights-overlapping-offsets.safetensors", overlap, "model.safetensors")

    def negative(h):
        h[first]["shape"] = [-3] + h[first]["shape"][1:]
    variant("weights-negative-dim.safetensors", negative, "model.safetensors")

    def absurd(h):
        h[first]["shape"] = [1 << 32, 1 << 32]
    variant("weights-absurd-dims.safetensors", absurd, "model.safetensors")

    def bad_dtype(h):
        h[first]["dtype"] = "F17"
    variant("weights-unknown-dtype.safetensors", bad_dtype, "model.safetensors")

    def mismatch(h):
        # Shape claims one element less than the bytes hold.
        s = h[first]["shape"]
        h[first]["shape"] = s[:-1] + [s[-1] - 1]
    variant("weights-size-mismatch.safetensors", mismatch, "model.safetensors")

    lo, hi = meta["classifier.weight"]["data_offsets"]
    for label, value in [("nan", float("nan")), ("inf", float("inf"))]:
        b = bytearray(body)
        b[lo + 4:lo + 8] = struct.pack("<f", value)
        add(f"weights-{label}.safetensors", "weights", write_st(header, bytes(b)), "model", "non-finite")

    config = json.load(open(os.path.join(BASE, "config.json")))
    for name, key, value, needle in [
        ("config-hidden-size-2^31.json", "hidden_size", 1 << 31, "hidden_size"),
        ("config-zero-heads.json", "num_attention_heads", 0, "num_attention_heads"),
        ("config-patch-larger-than-image.json", "patch_size", 64, "patch_size"),
        ("config-negative-layers.json", "num_hidden_layers", -1, "config.json"),
        ("config-unknown-model-type.json", "model_type", "swin", "swin"),
    ]:
        c = dict(config)
        c[key] = value
        add(name, "config", json.dumps(c, indent=1), "model", needle)
    add("config-not-json.json", "config", "{\"model_type\": \"vit\", ", "model", "config.json")

    pre = json.load(open(os.path.join(BASE, "preprocessor_config.json")))
    for name, key, value, needle in [
        ("preprocessor-resample-42.json", "resample", 42, "resample"),
        ("preprocessor-zero-size.json", "size", {"height": 0, "width": 0}, "preprocessor_config.json"),
        ("preprocessor-zero-std.json", "image_std", [0.0, 0.0, 0.0], "image_std"),
    ]:
        p = dict(pre)
        p[key] = value
        if key == "image_std":
            p["do_normalize"] = True
        add(name, "preprocessor", json.dumps(p, indent=1), "model", needle)

    # Images.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    huge = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")
    add("image-png-claims-100000x100000.png", "image", huge, "image", "100000x100000")
    # The two decompression bombs fuzzing found (RELIABILITY.md).
    add("image-gif-bomb-18-bytes.gif", "image", bytes.fromhex("474946383761cc1fcb33394eefce866c0000"), "image", "decompression bomb")
    add("image-gif-bomb-151-bytes.gif", "image", bytes.fromhex(
        "4749463837611a0a0d000050032c4440e554449c780891000000032c4440e554449c78019100a90000000000000000"
        "000000009c780191000000032c4440e554449c78019100a9000000000000000000000000000000000001000001000000"
        "002c2c2c240000000000000000000000008d504e10e5549c4478010000000000000000000000000000000000000001"
        "006d00449c277876b0"), "image", "decompression bomb")
    add("image-empty.png", "image", b"", "image", "empty")
    add("image-pdf.png", "image", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "image", "not an image")
    sample = open(os.path.join(ROOT, "models/fashion-vit/samples/0002-trouser.png"), "rb").read()
    add("image-truncated.png", "image", sample[: len(sample) // 2], "image", "image-truncated.png")
    for src, dst in [("coffee-cmyk.jpg", "image-cmyk.jpg")]:
        add(dst, "image", open(os.path.join(ROOT, "tests/fixtures/photos", src), "rb").read(), "ok", "")

    # Odd but valid: a single pixel and the thinnest strips a decoder takes, which an exact resize
    # must handle without allocating more than the image and the model justify.
    def png(w, h, value):
        rows = b"".join(b"\x00" + bytes([value, 255 - value, value // 2]) * w for _ in range(h))
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b"")
    add("image-1x1.png", "image", png(1, 1, 200), "ok", "")
    add("image-strip-16384x1.png", "image", png(16384, 1, 90), "ok", "")
    add("image-strip-1x16384.png", "image", png(1, 16384, 30), "ok", "")
    # A config may ask for sizes no input justifies: refused at load, before any image.
    for name, key, value, needle in [
        ("preprocessor-size-16384x16384.json", "size", {"height": 16384, "width": 16384}, "pixels"),
        ("preprocessor-crop-16384.json", "crop_size", 16384, "crop_size"),
    ]:
        p = dict(pre)
        p[key] = value
        if key == "crop_size":
            p["do_center_crop"] = True
        add(name, "preprocessor", json.dumps(p, indent=1), "model", needle)
    # A shortest-edge resize (valid) of a thin strip would make a 224 x 3.7M image: an error
    # naming the sizes, not an allocation of gigabytes.
    p = dict(pre)
    p["size"] = {"shortest_edge": 224}
    add("preprocessor-shortest-edge-224.json", "preprocessor", json.dumps(p, indent=1), "ok", "")
    add("image-strip-16384x1.png", "image", png(16384, 1, 90), "input", "resizes to", preprocessor="preprocessor-shortest-edge-224.json")

    # Quantized checkpoints (compressed-tensors pack-quantized): each case replaces one file of
    # tests/fixtures/quant/vit-classifier-int4 (4-bit, groups of 16; hidden size 32).
    QBASE = "tests/fixtures/quant/vit-classifier-int4"
    qheader, qbody = read_st(os.path.join(ROOT, QBASE, "model.safetensors"))
    qmeta = {k: v for k, v in qheader.items() if k != "__metadata__"}
    layer = "vit.encoder.layer.0.intermediate.dense"  # (64, 32): 4 words and 2 scales per row

    def qadd(name, data, needle, role="weights", kind="model"):
        add(name, role, data, kind, needle)
        cases[-1]["base"] = QBASE

    def rebuild(edit):
        """The quantized weights with tensors edited: edit(name, info, data) -> (info, data)."""
        order = sorted(qmeta, key=lambda k: qmeta[k]["data_offsets"][0])
        h, body, off = {"__metadata__": qheader.get("__metadata__", {})}, b"", 0
        for n in order:
            a, b = qmeta[n]["data_offsets"]
            info, data = edit(n, dict(qmeta[n], shape=list(qmeta[n]["shape"])), qbody[a:b])
            info["data_offsets"] = [off, off + len(data)]
            h[n] = info
            body += data
            off += len(data)
        return write_st(h, body)

    def only(target, f):
        return lambda n, info, data: f(info, data) if n == target else (info, data)

    def drop_last_word(info, data):
        rows, words = info["shape"]
        info["shape"] = [rows, words - 1]
        return info, b"".join(data[r * words * 4:(r * words + words - 1) * 4] for r in range(rows))
    qadd("quant-packed-truncated.safetensors", rebuild(only(f"{layer}.weight_packed", drop_last_word)), "pack into [64, 4]")

    def one_scale(info, data):
        rows, groups = info["shape"]
        info["shape"] = [rows, 1]
        w = len(data) // (rows * groups)
        return info, b"".join(data[r * groups * w:r * groups * w + w] for r in range(rows))
    qadd("quant-scale-wrong-shape.safetensors", rebuild(only(f"{layer}.weight_scale", one_scale)), "needs [64, 2]")

    import struct as _s
    def scale_value(value):
        def f(info, data):
            assert info["dtype"] == "F16"
            return info, _s.pack("<e", value) + data[2:]
        return f
    qadd("quant-scale-nan.safetensors", rebuild(only(f"{layer}.weight_scale", scale_value(float("nan")))), "non-finite")
    qadd("quant-scale-zero.safetensors", rebuild(only(f"{layer}.weight_scale", scale_value(0.0))), "not a positive number")

    def claim_shape(info, data):
        return info, _s.pack("<qq", 64, 33)
    qadd("quant-shape-claims-64x33.safetensors", rebuild(only(f"{layer}.weight_shape", claim_shape)), "says the weight is [64, 33]")

    def as_float(info, data):
        info["dtype"] = "F32"
        return info, data
    qadd("quant-packed-dtype-f32.safetensors", rebuild(only(f"{layer}.weight_packed", as_float)), "expected I32")

    qconfig = json.load(open(os.path.join(ROOT, QBASE, "config.json")))
    weights_cfg = qconfig["quantization_config"]["config_groups"]["group_0"]["weights"]

    def qconf(name, edit, needle):
        c = json.loads(json.dumps(qconfig))
        edit(c)
        qadd(name, json.dumps(c, indent=1), needle, role="config")
    qconf("quant-config-8-bits-for-4-bit-data.json", lambda c: c["quantization_config"]["config_groups"]["group_0"]["weights"].update(num_bits=8), "pack into [32, 8]")
    qconf("quant-config-group-8-for-16.json", lambda c: c["quantization_config"]["config_groups"]["group_0"]["weights"].update(group_size=8), "needs [32, 4]")
    qconf("quant-config-3-bits.json", lambda c: c["quantization_config"]["config_groups"]["group_0"]["weights"].update(num_bits=3), "3-bit")
    qconf("quant-config-asymmetric.json", lambda c: c["quantization_config"]["config_groups"]["group_0"]["weights"].update(symmetric=False), "asymmetric")
    qconf("quant-config-gptq.json", lambda c: c["quantization_config"].update(quant_method="gptq"), "gptq")
    qconf("quant-config-activations.json", lambda c: c["quantization_config"]["config_groups"]["group_0"].update(input_activations=dict(weights_cfg)), "input_activations")
    qconf("quant-config-missing.json", lambda c: c.pop("quantization_config"), "no quantization_config")

    json.dump({"base": "tests/fixtures/vit-classifier", "cases": cases}, open(os.path.join(OUT, "manifest.json"), "w"), indent=1)
    print(f"{len(cases)} cases in {OUT}")


if __name__ == "__main__":
    main()
