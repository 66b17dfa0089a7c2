"""Train, export and package the bundled sample model ``sample:resnet-fashion``.

A ResNet-18 layout (BasicBlock stages 2-2-2-2, BatchNorm, ReLU, residual adds, global
average pooling, linear head) adapted to 28x28 single-channel inputs: a 3x3 stride-1 stem
and no max-pool, as is usual for small images. Trained from scratch on Fashion-MNIST.

Development-time tool only: the workbench never imports torch. Pinned to ``torch==2.13.0``
(the local CPU build); it also runs on a CUDA machine (the bundled model was trained on one,
see ``train_log.json``), and records where it ran.

Steps (each a sub-command, all seeded):

    python sample_models/train_resnet_fashion.py train  --data DIR --out DIR [--device cuda]
    python sample_models/train_resnet_fashion.py export --checkpoint DIR/resnet_fashion.pt --out sample_models/
    python sample_models/train_resnet_fashion.py data   --data DIR --out sample_models/

``DIR`` holds the four ``*-idx?-ubyte.gz`` files of Fashion-MNIST (Debian package
``dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# Mean and standard deviation of the Fashion-MNIST training pixels, scaled to [0, 1].
MEAN, STD = 0.2860, 0.3530
WIDTH = 46  # channels of the first stage; stages are WIDTH x (1, 2, 4, 8)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST container format) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(data_dir / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(data_dir / f"{prefix}-labels-idx1-ubyte.gz")
    return x, y.astype(np.int64)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet18Small(nn.Module):
    """torchvision's ResNet-18 stage layout for 28x28 inputs."""

    def __init__(self, width: int = WIDTH, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        chans = [width, width * 2, width * 4, width * 8]
        layers, cin = [], width
        for i, c in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, c, stride), BasicBlock(c, c, 1)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float() / 255.0 - MEAN) / STD


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (pad 2) and horizontal flip, batched on the tensor's device."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=gen, device="cpu").to(x.device)
    dy = torch.randint(0, 5, (n,), generator=gen, device="cpu").to(x.device)
    base = torch.arange(28, device=x.device)
    rows = (dy[:, None] + base[None, :])[:, None, :, None].expand(n, 1, 28, 32)
    out = torch.gather(padded, 2, rows)
    cols = (dx[:, None] + base[None, :])[:, None, None, :].expand(n, 1, 28, 28)
    out = torch.gather(out, 3, cols)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        logits = model(normalize(x[i: i + batch]))
        correct += int((logits.argmax(1) == y[i: i + batch]).sum())
    return correct / len(x)


def cmd_train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    xtr, ytr = load_split(Path(args.data), "train")
    xte, yte = load_split(Path(args.data), "test")
    xtr_t = torch.from_numpy(xtr.copy())[:, None].to(device)
    ytr_t = torch.from_numpy(ytr).to(device)
    xte_t = torch.from_numpy(xte.copy())[:, None].to(device)
    yte_t = torch.from_numpy(yte).to(device)

    model = ResNet18Small(args.width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    steps_per_epoch = len(xtr) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15)
    gen = torch.Generator().manual_seed(args.seed)
    use_amp = device.type == "cuda"
    history = []
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen).to(device)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch: (s + 1) * args.batch]
            xb = normalize(augment(xtr_t[idx], gen))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = F.cross_entropy(model(xb), ytr_t[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        acc = accuracy(model, xte_t, yte_t)
        history.append({"epoch": epoch + 1, "loss": total / steps_per_epoch, "test_top1": acc,
                        "elapsed_s": round(time.time() - t0, 1)})
        print(json.dumps(history[-1]), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "width": args.width}, out / "resnet_fashion.pt")
    log = {
        "ran_on": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "args": vars(args),
        "final_test_top1_torch": history[-1]["test_top1"],
        "history": history,
        "train_seconds": round(time.time() - t0, 1),
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=2))


def cmd_export(args: argparse.Namespace) -> None:
    """Export the checkpoint to ONNX (dynamic batch) with the preprocessing in its metadata."""
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    model = ResNet18Small(ckpt["width"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    example = torch.randn(1, 1, 28, 28)
    out = Path(args.out) / "resnet_fashion.onnx"
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model, (example,), dynamo=True, input_names=["input"], output_names=["logits"],
        dynamic_shapes={"x": {0: batch}}, opset_version=18, optimize=False,
    )
    # Fold constants and drop dead nodes, but keep BatchNormalization: folding Conv+BN is the
    # workbench's own `fuse` pass, so the sample keeps the layout a training framework exports.
    # (`optimize=True` would run onnxscript's full optimizer, which folds BN into Conv.)
    import onnx  # noqa: PLC0415
    import onnx_ir as ir  # noqa: PLC0415
    from onnx_ir.passes.common import RemoveUnusedNodesPass  # noqa: PLC0415
    from onnxscript import optimizer  # noqa: PLC0415

    optimizer.fold_constants(program.model)
    RemoveUnusedNodesPass()(program.model)
    proto = ir.serde.serialize_model(program.model)
    meta = {
        "workbench.preprocessing": json.dumps({
            "source_dtype": "uint8", "layout": "NCHW", "scale": 1 / 255,
            "mean": [MEAN], "std": [STD],
        }),
        "workbench.labels": json.dumps(CLASSES),
        "workbench.task": "image-classification",
        "workbench.trained_on": "Fashion-MNIST train split (60,000 images)",
        "workbench.exported_with": f"torch {torch.__version__}",
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "workbench sample_models/train_resnet_fashion.py"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out))
    # Check the exported graph against torch on random inputs.
    import onnxruntime as ort  # noqa: PLC0415

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {"input": x.numpy()})[0]
    print(f"exported {out} ({out.stat().st_size / 1e6:.2f} MB); "
          f"max |onnx - torch| = {np.abs(got - ref).max():.2e}")


def cmd_data(args: argparse.Namespace) -> None:
    """Write the evaluation set (full test split) and a calibration subset, uint8, compressed."""
    xte, yte = load_split(Path(args.data), "test")
    xtr, ytr = load_split(Path(args.data), "train")
    out = Path(args.out)
    np.savez_compressed(out / "fashion_mnist_test.npz", images=xte[:, None], labels=yte.astype(np.uint8))
    rng = np.random.default_rng(args.seed)
    # Class-balanced: args.calib_per_class images of each class from the training split.
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), args.calib_per_class, replace=False)
                          for c in range(10)])
    idx.sort()
    np.savez_compressed(out / "fashion_mnist_calib.npz", images=xtr[idx][:, None],
                        labels=ytr[idx].astype(np.uint8), train_indices=idx.astype(np.int32))
    print(f"wrote {len(xte)} test and {len(idx)} calibration images to {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    t.add_argument("--out", required=True)
    t.add_argument("--device", default="auto")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--width", type=int, default=WIDTH)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("export")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--out", default=str(Path(__file__).parent))
    d = sub.add_parser("data")
    d.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    d.add_argument("--out", default=str(Path(__file__).parent))
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--calib-per-class", type=int, default=200)
    args = p.parse_args()
    {"train": cmd_train, "export": cmd_export, "data": cmd_data}[args.cmd](args)


if __name__ == "__main__":
    main()
