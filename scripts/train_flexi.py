"""Trains tessera's embedded default FlexiViT-style: the model of train_default.py (a 4-layer,
64-wide ViT on Fashion-MNIST, patch 4), but every training step runs at a patch size drawn from
2, 4, 7 and 14 (the divisors of 28 that leave more than one patch), its 4x4 patch kernel PI-resized
to that size and its 7x7 grid of position embeddings interpolated to the new grid, as tessera does
at load time with `--patch-size` (scripts/flexi.py). The checkpoint stays an ordinary ViT at patch
4; reference.json gains PyTorch's accuracy and predictions at every patch size.

With --baseline DIR it first measures a fixed-patch checkpoint (the previous default) at every
patch size the same way, for the table that shows what the training is for.

    python scripts/train_flexi.py --out DIR --baseline models/fashion-vit --init models/fashion-vit --epochs 10 --lr 1e-3
        # ~45 min on 2 cores (a P=2 step costs about 15 P=4 steps); then copy DIR over models/fashion-vit

With --init it continues from the fixed-patch default (as FlexiViT initialises from a trained ViT)
rather than from random weights, which converges far more slowly here (from random weights, two
epochs of 32 reached 65% at patch 4).
"""
import argparse, json, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flexi import interpolate_positions, pi_resize, pi_resize_matrix  # noqa: E402
from train_default import CLASSES, augment, load, to_pixels, write_samples  # noqa: E402

PATCHES = [2, 4, 7, 14]
BASE = 4


def forward(model, x, p, matrices):
    """The model at patch size p: the patch kernel PI-resized from its base size, the positions
    interpolated to the grid, then the usual encoder and head."""
    emb = model.vit.embeddings
    proj = emb.patch_embeddings.projection
    w = pi_resize(proj.weight, p, matrices[p])
    h = F.conv2d(x, w, proj.bias, stride=p)
    b, _, g, _ = h.shape
    h = h.flatten(2).transpose(1, 2)
    h = torch.cat([emb.cls_token.expand(b, -1, -1), h], dim=1)
    h = h + interpolate_positions(emb.position_embeddings, 1, g)
    for layer in model.vit.layers:
        h = layer(h, None)
    h = model.vit.layernorm(h)
    return model.classifier(h[:, 0])


def evaluate(model, pixels, labels, p, matrices):
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(pixels), 500):
            preds.append(forward(model, pixels[i:i + 500], p, matrices).argmax(-1))
    model.train()
    preds = torch.cat(preds).numpy()
    return preds, float((preds == labels).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/fashion-vit")
    ap.add_argument("--epochs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--baseline", help="a fixed-patch checkpoint to measure at every patch size first")
    ap.add_argument("--init", help="start from this checkpoint (the fixed-patch default) instead of random weights")
    args = ap.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    matrices = {p: pi_resize_matrix(BASE, p).float() for p in PATCHES}
    train_x, train_y = load("train")
    test_x, test_y = load("t10k")
    test_pixels = to_pixels(test_x)

    baseline = None
    if args.baseline:
        old = ViTForImageClassification.from_pretrained(args.baseline)
        baseline = {str(p): evaluate(old, test_pixels, test_y, p, matrices)[1] for p in PATCHES}
        print(f"baseline {args.baseline} by patch size: {baseline}", flush=True)

    config = ViTConfig(
        image_size=28, patch_size=BASE, num_channels=3, hidden_size=64, num_hidden_layers=4,
        num_attention_heads=4, intermediate_size=128, hidden_act="gelu", qkv_bias=True,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
        num_labels=10, id2label={i: c for i, c in enumerate(CLASSES)},
        label2id={c: i for i, c in enumerate(CLASSES)},
    )
    if args.init:
        model = ViTForImageClassification.from_pretrained(args.init)
        assert model.config.patch_size == BASE and model.config.image_size == 28, "--init: a 28x28, patch-4 ViT"
    else:
        model = ViTForImageClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * (len(train_x) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    xs, ys = to_pixels(train_x), torch.from_numpy(train_y.astype(np.int64))
    rng = np.random.default_rng(0)
    for epoch in range(args.epochs):
        t0 = time.time()
        perm = torch.randperm(len(xs))
        total = 0.0
        for i in range(0, len(xs) - args.batch + 1, args.batch):
            idx = perm[i:i + args.batch]
            p = int(rng.choice(PATCHES))
            loss = loss_fn(forward(model, augment(xs[idx]), p, matrices), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        accs = {p: evaluate(model, test_pixels, test_y, p, matrices)[1] for p in (BASE,)}
        print(f"epoch {epoch + 1}: loss {total / (len(xs) // args.batch):.4f} test acc at patch {BASE} {accs[BASE]:.4f} ({time.time() - t0:.0f}s)", flush=True)

    results = {str(p): evaluate(model, test_pixels, test_y, p, matrices) for p in PATCHES}
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    ViTImageProcessor(
        do_resize=True, size={"height": 28, "width": 28}, resample=2, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
    ).save_pretrained(args.out)
    preds, acc = results[str(BASE)]
    doc = {
        "dataset": "Fashion-MNIST t10k (Debian dataset-fashion-mnist)",
        "torch": torch.__version__,
        "training": f"FlexiViT-style: patch sizes {PATCHES} drawn per step, kernel PI-resized from {BASE}; "
                    f"{args.epochs} epochs, lr {args.lr}" + (f", from {args.init} (the previous fixed-patch default)" if args.init else ", from random weights"),
        "accuracy": acc,
        "predictions": "".join(str(int(p)) for p in preds),
        "by_patch_size": {p: {"accuracy": a, "predictions": "".join(str(int(x)) for x in pr)} for p, (pr, a) in results.items()},
    }
    if baseline:
        doc["fixed_patch_baseline"] = baseline
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(doc, f)
    write_samples(args.out)
    print(f"saved {args.out}: test accuracy by patch size " + ", ".join(f"{p}: {a:.4f}" for p, (_, a) in results.items()))


if __name__ == "__main__":
    main()
