"""Trains tessera's embedded default model: a small ViT on Fashion-MNIST.

Data: Debian's `dataset-fashion-mnist` (MIT), /usr/share/datasets/fashion-mnist.
Writes a Hugging Face checkpoint folder (config.json, model.safetensors,
preprocessor_config.json) plus reference.json with PyTorch's own test-set accuracy
and predictions, and a few sample images.

    python scripts/train_default.py --out models/fashion-vit   # 32 epochs, about 25 min on 2 cores
"""
import argparse, gzip, json, os, time

import numpy as np
import torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

DATA = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load(kind):
    with gzip.open(f"{DATA}/{kind}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(f"{DATA}/{kind}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def to_pixels(images_u8):
    # Exactly what the image processor does to a grayscale 28x28 image: RGB (channel copy),
    # rescale by 1/255, normalize with mean 0.5 and std 0.5.
    x = torch.from_numpy(images_u8.astype(np.float32)) / 255.0
    x = (x - 0.5) / 0.5
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def augment(x):
    # Random horizontal flip and a shift of up to 2 pixels.
    flip = torch.rand(x.shape[0]) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = np.random.randint(0, 5, 2)
    return pad[:, :, dy:dy + 28, dx:dx + 28]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/fashion-vit")
    ap.add_argument("--epochs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--samples-only", action="store_true")
    args = ap.parse_args()
    if args.samples_only:
        write_samples(args.out)
        return
    torch.manual_seed(0)
    np.random.seed(0)

    train_x, train_y = load("train")
    test_x, test_y = load("t10k")
    config = ViTConfig(
        image_size=28, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=128, hidden_act="gelu", qkv_bias=True,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
        num_labels=10, id2label={i: c for i, c in enumerate(CLASSES)},
        label2id={c: i for i, c in enumerate(CLASSES)},
    )
    model = ViTForImageClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * (len(train_x) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    xs, ys = to_pixels(train_x), torch.from_numpy(train_y.astype(np.int64))
    test_pixels = to_pixels(test_x)

    def evaluate():
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(test_pixels), 500):
                preds.append(model(pixel_values=test_pixels[i:i + 500]).logits.argmax(-1))
        model.train()
        preds = torch.cat(preds).numpy()
        return preds, float((preds == test_y).mean())

    for epoch in range(args.epochs):
        t0 = time.time()
        perm = torch.randperm(len(xs))
        total = 0.0
        for i in range(0, len(xs) - args.batch + 1, args.batch):
            idx = perm[i:i + args.batch]
            logits = model(pixel_values=augment(xs[idx])).logits
            loss = loss_fn(logits, ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        _, acc = evaluate()
        print(f"epoch {epoch + 1}: loss {total / (len(xs) // args.batch):.4f} test acc {acc:.4f} ({time.time() - t0:.0f}s)", flush=True)

    preds, acc = evaluate()
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    ViTImageProcessor(
        do_resize=True, size={"height": 28, "width": 28}, resample=2, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
    ).save_pretrained(args.out)
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({
            "dataset": "Fashion-MNIST t10k (Debian dataset-fashion-mnist)",
            "torch": torch.__version__,
            "accuracy": acc,
            "predictions": "".join(str(int(p)) for p in preds),
        }, f)
    write_samples(args.out)
    print(f"saved {args.out}: test accuracy {acc:.4f}")



def write_samples(out):
    """One test image per class, as PNG, named by test-set index and class."""
    images, labels = load("t10k")
    from PIL import Image
    folder = os.path.join(out, "samples")
    os.makedirs(folder, exist_ok=True)
    for c, name in enumerate(CLASSES):
        i = int(np.nonzero(labels == c)[0][0])
        slug = name.lower().replace("/", "-").replace(" ", "-")
        Image.fromarray(images[i]).save(os.path.join(folder, f"{i:04d}-{slug}.png"))


if __name__ == "__main__":
    main()
