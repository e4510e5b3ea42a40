"""The training step of a CPU recipe beside the same model in lightly and PyTorch, on this
machine, one after the other, as images per second.

`--shape=cifar10` (`configs/cpu_cifar10.flags`): SimCLR on ResNet-18 with the CIFAR stem at
width 0.25 (h of 128), batch 128, a 2-layer projection head, NT-Xent at temperature 0.5,
Adam; lightly's `ResNetGenerator("resnet-18", width=0.25)`, `SimCLRProjectionHead` and
`NTXentLoss`. `--shape=mnist` (`configs/cpu_mnist.flags`): the same with the small CNN
(3x3 conv, batch norm and ReLU of 32, 64, 128 and 256 channels, strides 1, 2, 2, 2, h
averaged over a 2x2 grid: 1024-d) on 28-px digits, written here in PyTorch. lightly's rows:

- fixed tensors: the step alone on two random batches of views (no data, no augmentation),
  in float32 and under bfloat16 autocast;
- end to end (cifar10 only): CIFAR-10's JPEG folder through `torchvision.datasets.ImageFolder`,
  lightly's `SimCLRTransform` (colour strength 0.5, crops 8-100%, no blur) and a
  `DataLoader` with `--workers` processes, in float32 and bfloat16.

Ours: `python -m experiments.benchmark --configs=configs/cpu_<shape>.flags` at float32 and at
`auto` (bfloat16 where the CPU computes it), which is the recipe's own step: images decoded
once and held in memory, both views augmented inside the step. lightly and PyTorch live in a
separate virtual environment used only here (`pip install torch torchvision lightly`):

    python scripts/speed_side_by_side.py run --data=DIR --peer_python=/path/to/peer/bin/python
    python scripts/speed_side_by_side.py run --shape=mnist --data=mnist.npz --peer_python=...

DIR holds CIFAR-10's train/ class folders (the shared JPEG copy, unpacked). `run` times
lightly's rows under the peer's Python, then ours, and prints one table with each row's
ratio to ours; `lightly` and `ours` time one side and print JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH_SIZE, WIDTH, TEMPERATURE, LEARNING_RATE, OUTPUT_DIM = 128, 0.25, 0.5, 4e-3, 128
# Each shape: its recipe file, its images (channels, side) and h's width (our projection
# head's hidden layer is as wide, its output 128).
SHAPES = {
    "cifar10": {"recipe": "cpu_cifar10.flags", "images": (3, 32), "h": int(512 * WIDTH)},
    "mnist": {"recipe": "cpu_mnist.flags", "images": (1, 28), "h": 256 * 2 * 2},
}


def lightly_rows(shape: str, data: str, steps: int, warmup: int, workers: int) -> list[dict]:
    """lightly's rows (runs under the peer environment)."""
    import torch
    import torch.nn as nn
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models import ResNetGenerator
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    torch.manual_seed(0)

    channels, side = SHAPES[shape]["images"]
    features = SHAPES[shape]["h"]

    def small_cnn():
        layers, previous = [], channels
        for count, stride in ((32, 1), (64, 2), (128, 2), (256, 2)):
            layers += [nn.Conv2d(previous, count, 3, stride, 1, bias=False), nn.BatchNorm2d(count), nn.ReLU()]
            previous = count
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2))

    class SimCLR(nn.Module):
        def __init__(self):
            super().__init__()
            if shape == "mnist":
                self.backbone = small_cnn()
            else:
                resnet = ResNetGenerator("resnet-18", width=WIDTH)
                self.backbone = nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1))
            self.projection_head = SimCLRProjectionHead(features, features, OUTPUT_DIM)

        def forward(self, x):
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

    def timed(batches, dtype: torch.dtype | None) -> float:
        model = SimCLR()
        criterion = NTXentLoss(temperature=TEMPERATURE)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        start = None
        for step, (x0, x1) in enumerate(batches):
            if step == warmup:
                start = time.perf_counter()
            if step == warmup + steps:
                break
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = criterion(model(x0), model(x1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return steps * BATCH_SIZE / (time.perf_counter() - start)

    def fixed():
        x0, x1 = torch.rand(BATCH_SIZE, channels, side, side), torch.rand(BATCH_SIZE, channels, side, side)
        while True:
            yield x0, x1

    def from_folder():
        transform = SimCLRTransform(input_size=32, cj_strength=0.5, min_scale=0.08, gaussian_blur=0.0)
        dataset = torchvision.datasets.ImageFolder(os.path.join(data, "train"), transform=transform)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=BATCH_SIZE, shuffle=True, num_workers=workers, drop_last=True, persistent_workers=True
        )
        while True:
            for views, _ in loader:
                yield views[0], views[1]

    rows = []
    sources = (
        (("fixed tensors", fixed), ("end to end", from_folder)) if shape == "cifar10" else (("fixed tensors", fixed),)
    )
    for name, batches in sources:
        for precision, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
            rate = timed(batches(), dtype)
            rows.append({"side": "lightly", "row": name, "precision": precision, "images_per_second": rate})
            print(f"lightly, {name}, {precision}: {rate:.1f} images/s", file=sys.stderr, flush=True)
    return rows


def our_rows(shape: str, data: str, steps: int) -> list[dict]:
    """Our recipe step at float32 and auto, through experiments.benchmark."""
    recipe = os.path.join(REPO, "configs", SHAPES[shape]["recipe"])
    rows = []
    for precision in ("float32", "auto"):
        with tempfile.TemporaryDirectory() as folder:
            output = os.path.join(folder, "rows.json")
            command = [
                sys.executable, "-m", "experiments.benchmark", f"--configs={recipe}", f"--override=--dataset={data}",
                f"--override=--precision={precision}", f"--steps={steps}", f"--json={output}",
            ]  # fmt: skip
            subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            with open(output) as file:
                [measured] = json.load(file)
        rows.append(
            {
                "side": "contrastive_tf",
                "row": "recipe step (augmentation inside)",
                "precision": measured["precision"],
                "images_per_second": measured["images_per_second"],
                "mfu": measured["mfu"],
            }
        )
        print(f"ours, {precision}: {measured['images_per_second']:.1f} images/s", file=sys.stderr, flush=True)
    return rows


def cpu_flags() -> str:
    """The lscpu flags that decide these speeds."""
    with open("/proc/cpuinfo") as file:
        flags = next(line for line in file if line.startswith("flags")).split(":")[1].split()
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
    return ", ".join(flag for flag in wanted if flag in flags)


def table(rows: list[dict]) -> str:
    ours = {
        row["precision"].removeprefix("mixed_"): row["images_per_second"] for row in rows if row["side"] != "lightly"
    }
    lines = [
        f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores",
        "| side | row | precision | images/s | ours / it |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        precision = row["precision"].removeprefix("mixed_")
        ratio = ours.get(precision, ours.get("float32")) / row["images_per_second"]
        lines.append(
            f"| {row['side']} | {row['row']} | {row['precision']} | {row['images_per_second']:.1f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "lightly", "ours"))
    parser.add_argument("--shape", choices=tuple(SHAPES), default="cifar10", help="the recipe whose step is timed")
    parser.add_argument(
        "--data", required=True, help="cifar10: class folders (DIR/train/CLASS/*.jpg); mnist: the .npz (ours only)"
    )
    parser.add_argument("--peer_python", default="python", help="the Python of the environment with lightly")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row, after the warm-up")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader processes of lightly's end-to-end rows")
    args = parser.parse_args()
    if args.command == "lightly":
        print(json.dumps(lightly_rows(args.shape, args.data, args.steps, args.warmup, args.workers)))
    elif args.command == "ours":
        print(json.dumps(our_rows(args.shape, args.data, args.steps)))
    else:
        peer = [args.peer_python, os.path.abspath(__file__), "lightly", f"--shape={args.shape}", f"--data={args.data}"]
        peer += [f"--steps={args.steps}", f"--warmup={args.warmup}", f"--workers={args.workers}"]
        rows = json.loads(subprocess.run(peer, check=True, capture_output=True, text=True).stdout)
        print(table(rows + our_rows(args.shape, args.data, args.steps)))


if __name__ == "__main__":
    main()
