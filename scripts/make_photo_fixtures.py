"""Expected preprocessing of real photos by `transformers`' image processors (PIL backend).

Photos come from scikit-image's data folder (public domain / CC0; see tests/fixtures/photos/README.md).
For each (photo, processor config) pair, writes the processor config and the pixel_values that
`transformers` produces, so the tests can compare tessera's preprocessing on the same files.

    python scripts/make_photo_fixtures.py --out tests/fixtures/photos
"""
import argparse, json, os

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from transformers import AutoImageProcessor
from transformers.image_utils import load_image

CONFIGS = {
    "vit-bilinear-96": {"image_processor_type": "ViTImageProcessor", "do_resize": True,
                        "size": {"height": 96, "width": 96}, "resample": 2, "do_rescale": True,
                        "rescale_factor": 1 / 255, "do_normalize": True,
                        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    "deit-bicubic-110-crop-96": {"image_processor_type": "DeiTImageProcessor", "do_resize": True,
                                 "size": {"height": 110, "width": 110}, "resample": 3, "do_center_crop": True,
                                 "crop_size": {"height": 96, "width": 96}, "do_rescale": True,
                                 "rescale_factor": 1 / 255, "do_normalize": True,
                                 "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
    "bit-shortest-100-crop-96": {"image_processor_type": "BitImageProcessor", "do_resize": True,
                                 "size": {"shortest_edge": 100}, "resample": 3, "do_center_crop": True,
                                 "crop_size": {"height": 96, "width": 96}, "do_rescale": True,
                                 "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
                                 "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
    # CLIP's hub configs give one size, which its processor reads as the shortest edge.
    "clip-size-100-crop-96": {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": 100,
                              "resample": 3, "do_center_crop": True, "crop_size": 96, "do_rescale": True,
                              "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
                              "image_mean": [0.48145466, 0.4578275, 0.40821073],
                              "image_std": [0.26862954, 0.26130258, 0.27577711]},
    "vit-lanczos-upscale-150x130": {"image_processor_type": "ViTImageProcessor", "do_resize": True,
                                    "size": {"height": 150, "width": 130}, "resample": 1, "do_rescale": True,
                                    "rescale_factor": 1 / 255, "do_normalize": True,
                                    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/photos")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not all(os.path.exists(os.path.join(args.out, f)) for f in ("chelsea.png", "coffee-crop.png")):
        import skimage  # only to take the photos from its data folder the first time
        data = os.path.join(os.path.dirname(skimage.__file__), "data")
        Image.open(os.path.join(data, "chelsea.png")).convert("RGB").save(os.path.join(args.out, "chelsea.png"))
        Image.open(os.path.join(data, "coffee.png")).convert("RGB").crop((150, 60, 390, 240)).save(os.path.join(args.out, "coffee-crop.png"))
    expected = {}
    for cfg_name, cfg in CONFIGS.items():
        path = os.path.join(args.out, f"{cfg_name}.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        os.makedirs("/tmp/pp", exist_ok=True)
        with open("/tmp/pp/preprocessor_config.json", "w") as f:
            json.dump(cfg, f)
        # The PIL backend: transformers 5 defaults to torchvision, up to one grey level off PIL.
        proc = AutoImageProcessor.from_pretrained("/tmp/pp", backend="pil")
        for photo in ["chelsea.png", "coffee-crop.png"]:
            image = load_image(os.path.join(args.out, photo))
            pv = proc(images=image, return_tensors="np")["pixel_values"][0].astype(np.float32)
            expected[f"{photo}:{cfg_name}"] = np.ascontiguousarray(pv)
            print(photo, cfg_name, pv.shape, type(proc).__name__)
    save_file(expected, os.path.join(args.out, "expected.safetensors"))

    # A CMYK JPEG (Adobe APP14 marker, as Photoshop and print workflows write them) and the RGB
    # that PIL's decoder plus `convert("RGB")` (what `load_image` does) makes of it.
    cmyk_path = os.path.join(args.out, "coffee-cmyk.jpg")
    Image.open(os.path.join(args.out, "coffee-crop.png")).convert("CMYK").save(cmyk_path, quality=95)
    rgb = np.asarray(load_image(cmyk_path), dtype=np.uint8)
    save_file({"rgb": np.ascontiguousarray(rgb)}, os.path.join(args.out, "coffee-cmyk-rgb.safetensors"))
    print("coffee-cmyk.jpg", rgb.shape)


if __name__ == "__main__":
    main()
