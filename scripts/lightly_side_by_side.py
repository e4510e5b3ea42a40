"""lightly's CIFAR-10 benchmark models and ours at the same settings, scored by one evaluator.

For each method, lightly's model as its `cifar10_benchmark.py` builds it (heads, loss,
transforms, SGD settings, learning rate scaled for batch 256) but on ResNet-18 at width 0.25,
then ours with flags that mirror it; both write frozen features of the CIFAR-10 train and
test images, and this project's kNN (k=200, temperature 0.1, cosine) and standardised
linear probe score both. lightly and PyTorch live in a separate virtual environment used
only here; the `lightly` subcommand runs under it, the others under ours:

    /work/peer-venv/bin/python scripts/lightly_side_by_side.py lightly --method=simclr \\
        --epochs=2 --data=DIR --out=FEATURES.npz
    python scripts/lightly_side_by_side.py ours --method=simclr --epochs=2 --data=DIR \\
        --out=FEATURES.npz --model_dir=RUN
    python scripts/lightly_side_by_side.py score --features=FEATURES.npz --results=results.tsv
    python scripts/lightly_side_by_side.py run --methods=simclr,moco --epochs=2 --data=DIR \\
        --work=WORK --peer_python=/work/peer-venv/bin/python

`run` does the three in turn per method, lightly first, appending a row to WORK/results.tsv
as each side finishes; `--methods=random` scores both frameworks' untrained encoders;
`--seed=N` (default 0) seeds both sides and names the files of seeds other than 0.
DIR holds train/ and test/ class folders (the shared JPEG copy of CIFAR-10, unpacked).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "nnclr")
WIDTH = 0.25
BATCH_SIZE = 256
# h of ResNet-18 at width 0.25: lightly's heads take 512 at width 1; this replaces it.
FEATURE_DIM = int(512 * WIDTH)
# lightly's ResNet and heads as ours builds them: no zero-initialised residual scale, its
# transforms' Normalize with ImageNet's statistics inside the encoder, and torch's layer
# defaults for the initial weights of the convolutions and the heads' linear layers.
ZERO_INIT_RESIDUAL = False
INPUT_NORMALIZATION = "imagenet"
INITIALIZER = "pytorch"
# The methods trained as lightly's ImageNet benchmarks, whose warmup is 10 of 100 epochs:
# here the first tenth of the run.
WARMUP_METHODS = ("vicreg",)
WARMUP_FRACTION = 10

# Ours, per method: our recipe file (if it mirrors lightly) and the overrides that make it
# lightly's model at batch 256: lr 0.06 x 256/128 = 0.12 (SimSiam's 0.06 unscaled), SGD with
# momentum 0.9 and coupled weight decay 5e-4 on every parameter, a cosine without warmup
# stepped every step (as this script's lightly side), no blur.
COMMON = [
    "--encoder=resnet18",
    f"--width={WIDTH}",
    f"--batch_size={BATCH_SIZE}",
    "--optimizer=sgd",
    "--lr_scaling=none",
    "--warmup_epochs=0",
    "--weight_decay=5e-4",
    "--weight_decay_vectors=true",
    "--lr_schedule_interval=step",
    f"--zero_init_residual={str(ZERO_INIT_RESIDUAL).lower()}",
    f"--input_normalization={INPUT_NORMALIZATION}",
    f"--initializer={INITIALIZER}",
    "--blur=false",
    "--precision=float32",
    "--final_linear_probe=false",
    "--final_knn=false",
    "--final_random_baseline=false",
    "--verbose=2",
]
OURS = {
    # SimCLRModel: SimCLRProjectionHead(512, 512, 128) (batch norm after both layers),
    # NTXentLoss() (temperature 0.5), SimCLRTransform(cj_strength=0.5, no blur, crops 8-100%).
    "simclr": [
        "--method=simclr",
        "--learning_rate=0.12",
        "--temperature=0.5",
        "--projection_layers=2",
        "--projection_hidden_dim=512",
        "--projection_dim=128",
        "--projection_batch_norm=all",
        "--color_jitter_strength=0.5",
        "--crop_scale_min=0.08",
    ],
    # MocoModel: configs/moco_cifar10.flags (lightly's), at its batch-128/256 memory bank 4096
    # and MoCoProjectionHead(512, 512, 128).
    "moco": [
        "--flagfile=configs/moco_cifar10.flags",
        "--learning_rate=0.12",
        "--queue_size=4096",
        "--projection_hidden_dim=512",
    ],
    # BYOLModel: configs/byol_cifar10.flags (lightly's; lr and decay x4 / /4 for BYOL's
    # (2 - 2 cos) loss, which has 4x the gradient of lightly's -cos).
    "byol": [
        "--flagfile=configs/byol_cifar10.flags",
        "--learning_rate=0.03",
        "--weight_decay=2e-3",
    ],
    # SimSiamModel: configs/simsiam_cifar10.flags (lightly's): lr 0.06, not scaled.
    "simsiam": [
        "--flagfile=configs/simsiam_cifar10.flags",
        "--learning_rate=0.06",
    ],
    # BarlowTwinsModel: projector 512 -> 2048 (BN, ReLU) -> 2048, BarlowTwinsLoss (lambda
    # 5e-3, unscaled), SGD, byol_transform (BYOL's views, torchvision jitter, no blur).
    "barlow_twins": [
        "--method=barlow_twins",
        "--learning_rate=0.12",
        "--loss_scale=1.0",
        "--redundancy_weight=0.005",
        "--projection_layers=2",
        "--projection_hidden_dim=2048",
        "--projection_dim=2048",
        "--head_output_bias=true",
        "--asymmetric_views=true",
        "--color_jitter=torchvision",
        "--color_jitter_strength=0.5",
        "--crop_scale_min=0.08",
    ],
    # VICReg is not in the benchmark file; built as its Barlow Twins (lightly's VICReg example:
    # VICRegProjectionHead(512, 2048, 2048, num_layers=2), VICRegLoss() 25/25/1) trained as
    # lightly's ImageNet VICReg benchmark (LARS at 0.2, trust 0.001, decay 1e-6 off batch norm
    # and biases, a warmup over the first tenth; with SGD both sides diverge) and
    # VICRegTransform(input_size=32, gaussian_blur=0).
    "vicreg": [
        "--method=vicreg",
        "--optimizer=lars",
        "--lars_variant=solo_learn",
        "--lars_trust_coefficient=0.001",
        "--learning_rate=0.2",
        "--weight_decay=1e-6",
        "--weight_decay_vectors=false",
        "--invariance_weight=25",
        "--variance_weight=25",
        "--covariance_weight=1",
        "--projection_layers=2",
        "--projection_hidden_dim=2048",
        "--projection_dim=2048",
        "--head_output_bias=true",
        "--asymmetric_views=true",
        "--color_jitter=torchvision",
        "--color_jitter_strength=0.5",
        "--crop_scale_min=0.08",
    ],
    # NNCLRModel: projector 512 -> 2048 (BN, ReLU) -> 256 (BN), NNCLRPredictionHead(256, 4096,
    # 256), NTXentLoss() (temperature 0.5), a support set of 4096, simclr_transform.
    "nnclr": [
        "--method=nnclr",
        "--learning_rate=0.12",
        "--temperature=0.5",
        "--queue_size=4096",
        "--projection_layers=2",
        "--projection_hidden_dim=2048",
        "--projection_dim=256",
        "--predictor_hidden_dim=4096",
        "--asymmetric_views=false",
        "--color_jitter_strength=0.5",
        "--crop_scale_min=0.08",
    ],
}


def pretrain_flags(method: str, epochs: int, data: str, model_dir: str, seed: int = 0) -> list[str]:
    """Our pretraining flags for `method`: its recipe file, the common settings, then its
    own overrides (absl lets a later flag override an earlier one)."""
    own = OURS[method]
    files = [flag for flag in own if flag.startswith("--flagfile=")]
    rest = [flag for flag in own if not flag.startswith("--flagfile=")]
    run = [f"--dataset={data}", f"--epochs={epochs}", f"--model_dir={model_dir}", f"--seed={seed}"]
    if method in WARMUP_METHODS:
        rest.append(f"--warmup_epochs={epochs / WARMUP_FRACTION:g}")
    return files + COMMON + run + rest


# ---------------------------------------------------------------------------------------
# lightly's side (PyTorch; imported only under the peer environment)


def lightly_models(max_steps: int):
    """lightly's benchmark model classes (cifar10_benchmark.py at its git HEAD, lightly 1.6),
    copied with ResNetGenerator("resnet-18", width=0.25) and heads taking its 128-d h, the
    Lightning module replaced by a plain nn.Module with the same training_step and
    configure_optimizers (lr_factor = 256 / 128). One change: the cosine schedule runs over
    `max_steps` and steps every step, as ours does; the benchmark steps it once an epoch,
    which over 200 epochs is the same curve but over 2 holds the rate at 0.12 then 0.06."""
    import copy
    import math

    import torch
    import torch.nn as nn
    from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
    from lightly.models import ResNetGenerator, modules, utils
    from lightly.models.modules import heads

    lr_factor = BATCH_SIZE / 128
    d = FEATURE_DIM

    def backbone(num_splits: int = 0):
        resnet = ResNetGenerator("resnet-18", width=WIDTH, num_splits=num_splits)
        return nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1))

    def sgd(params, lr):
        optim = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
        return optim, torch.optim.lr_scheduler.CosineAnnealingLR(optim, max_steps)

    def lars_with_warmup(model, lr, weight_decay):
        """lightly's ImageNet benchmarks' optimiser (benchmarks/imagenet/resnet50/vicreg.py):
        its LARS, batch norm and biases in a group without weight decay (which its LARS also
        leaves unscaled), a linear warmup over the first tenth of training, then the cosine."""
        from lightly.utils.lars import LARS

        params, no_decay = utils.get_weight_decay_parameters([model])
        groups = [{"params": params}, {"params": no_decay, "weight_decay": 0.0}]
        optim = LARS(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
        warmup = max_steps // WARMUP_FRACTION

        def factor(step):
            if step < warmup:
                return step / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(max_steps - warmup, 1)))

        return optim, torch.optim.lr_scheduler.LambdaLR(optim, factor)

    class MocoModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone(num_splits=8)
            self.projection_head = heads.MoCoProjectionHead(d, 512, 128)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            utils.deactivate_requires_grad(self.backbone_momentum)
            utils.deactivate_requires_grad(self.projection_head_momentum)
            self.criterion = NTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))

        def training_step(self, batch):
            (x0, x1), _, _ = batch
            utils.update_momentum(self.backbone, self.backbone_momentum, 0.99)
            utils.update_momentum(self.projection_head, self.projection_head_momentum, 0.99)

            def step(x0_, x1_):
                x1_, shuffle = utils.batch_shuffle(x1_, distributed=False)
                x0_ = self.projection_head(self.backbone(x0_).flatten(start_dim=1))
                x1_ = self.projection_head_momentum(self.backbone_momentum(x1_).flatten(start_dim=1))
                x1_ = utils.batch_unshuffle(x1_, shuffle, distributed=False)
                return x0_, x1_

            return 0.5 * (self.criterion(*step(x0, x1)) + self.criterion(*step(x1, x0)))

        def configure_optimizers(self):
            params = list(self.backbone.parameters()) + list(self.projection_head.parameters())
            return sgd(params, 6e-2 * lr_factor)

    class SimCLRModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone()
            self.projection_head = heads.SimCLRProjectionHead(d, 512, 128)
            self.criterion = NTXentLoss()

        def forward(self, x):
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

        def training_step(self, batch):
            (x0, x1), _, _ = batch
            return self.criterion(self.forward(x0), self.forward(x1))

        def configure_optimizers(self):
            return sgd(self.parameters(), 6e-2 * lr_factor)

    class SimSiamModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone()
            self.prediction_head = heads.SimSiamPredictionHead(2048, 512, 2048)
            self.projection_head = heads.ProjectionHead(
                [
                    (d, 2048, nn.BatchNorm1d(2048), nn.ReLU(inplace=True)),
                    (2048, 2048, nn.BatchNorm1d(2048), None),
                ]
            )
            self.criterion = NegativeCosineSimilarity()

        def forward(self, x):
            z = self.projection_head(self.backbone(x).flatten(start_dim=1))
            return z.detach(), self.prediction_head(z)

        def training_step(self, batch):
            (x0, x1), _, _ = batch
            z0, p0 = self.forward(x0)
            z1, p1 = self.forward(x1)
            return 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))

        def configure_optimizers(self):
            return sgd(self.parameters(), 6e-2)  # no lr-scaling, as the benchmark

    class BarlowTwinsModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone()
            self.projection_head = heads.ProjectionHead(
                [
                    (d, 2048, nn.BatchNorm1d(2048), nn.ReLU(inplace=True)),
                    (2048, 2048, None, None),
                ]
            )
            self.criterion = BarlowTwinsLoss(gather_distributed=False)

        def forward(self, x):
            return self.projection_head(self.backbone(x).flatten(start_dim=1))

        def training_step(self, batch):
            (x0, x1), _, _ = batch
            return self.criterion(self.forward(x0), self.forward(x1))

        def configure_optimizers(self):
            return sgd(self.parameters(), 6e-2 * lr_factor)

    class VICRegModel(BarlowTwinsModel):
        """Not in the CIFAR-10 benchmark: its Barlow Twins with lightly's VICReg head and loss,
        trained as lightly's ImageNet VICReg benchmark: LARS at 0.2 x 256/256, weight decay
        1e-6, warmup. With SGD its loss turns NaN (and ours): with momentum 0.9 within 50
        steps at 0.12 and 0.06, within 15 with a warmup to 0.06; without momentum at 0.06
        (its VICReg example) within 50. The first gradient of each convolution is ~30x the
        kernel (norm 77 against 2.3 for the stem), which only LARS' per-layer step bounds."""

        def __init__(self):
            super().__init__()
            self.projection_head = heads.VICRegProjectionHead(d, 2048, 2048, num_layers=2)
            self.criterion = VICRegLoss()

        def configure_optimizers(self):
            return lars_with_warmup(self, 0.2, 1e-6)

    class BYOLModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone()
            self.projection_head = heads.BYOLProjectionHead(d, 1024, 256)
            self.prediction_head = heads.BYOLPredictionHead(256, 1024, 256)
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_head_momentum = copy.deepcopy(self.projection_head)
            utils.deactivate_requires_grad(self.backbone_momentum)
            utils.deactivate_requires_grad(self.projection_head_momentum)
            self.criterion = NegativeCosineSimilarity()

        def forward(self, x):
            return self.prediction_head(self.projection_head(self.backbone(x).flatten(start_dim=1)))

        def forward_momentum(self, x):
            return self.projection_head_momentum(self.backbone_momentum(x).flatten(start_dim=1)).detach()

        def training_step(self, batch):
            utils.update_momentum(self.backbone, self.backbone_momentum, m=0.99)
            utils.update_momentum(self.projection_head, self.projection_head_momentum, m=0.99)
            (x0, x1), _, _ = batch
            p0, z0 = self.forward(x0), self.forward_momentum(x0)
            p1, z1 = self.forward(x1), self.forward_momentum(x1)
            return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))

        def configure_optimizers(self):
            params = (
                list(self.backbone.parameters())
                + list(self.projection_head.parameters())
                + list(self.prediction_head.parameters())
            )
            return sgd(params, 6e-2 * lr_factor)

    class NNCLRModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone()
            self.prediction_head = heads.NNCLRPredictionHead(256, 4096, 256)
            self.projection_head = heads.ProjectionHead(
                [
                    (d, 2048, nn.BatchNorm1d(2048), nn.ReLU(inplace=True)),
                    (2048, 256, nn.BatchNorm1d(256), None),
                ]
            )
            self.criterion = NTXentLoss()
            self.memory_bank = modules.NNMemoryBankModule(size=(4096, 256))

        def forward(self, x):
            z = self.projection_head(self.backbone(x).flatten(start_dim=1))
            return z.detach(), self.prediction_head(z)

        def training_step(self, batch):
            (x0, x1), _, _ = batch
            z0, p0 = self.forward(x0)
            z1, p1 = self.forward(x1)
            z0 = self.memory_bank(z0, update=False)
            z1 = self.memory_bank(z1, update=True)
            return 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))

        def configure_optimizers(self):
            return sgd(self.parameters(), 6e-2 * lr_factor)

    return {
        "simclr": SimCLRModel,
        "moco": MocoModel,
        "byol": BYOLModel,
        "simsiam": SimSiamModel,
        "barlow_twins": BarlowTwinsModel,
        "vicreg": VICRegModel,
        "nnclr": NNCLRModel,
        "random": SimCLRModel,
    }


def lightly_transforms():
    """The benchmark's transforms by method, and its test transform."""
    import torchvision
    from lightly.transforms import (
        BYOLTransform,
        BYOLView1Transform,
        BYOLView2Transform,
        SimCLRTransform,
        SimSiamTransform,
        VICRegTransform,
    )
    from lightly.transforms.utils import IMAGENET_NORMALIZE

    byol = BYOLTransform(
        view_1_transform=BYOLView1Transform(input_size=32, gaussian_blur=0.0),
        view_2_transform=BYOLView2Transform(input_size=32, gaussian_blur=0.0),
    )
    simclr = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)
    simsiam = SimSiamTransform(input_size=32, gaussian_blur=0.0)
    vicreg = VICRegTransform(input_size=32, gaussian_blur=0.0)
    test = torchvision.transforms.Compose(
        [
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize(mean=IMAGENET_NORMALIZE["mean"], std=IMAGENET_NORMALIZE["std"]),
        ]
    )
    by_method = {
        "simclr": simclr,
        "moco": simclr,
        "byol": byol,
        "simsiam": simsiam,
        "barlow_twins": byol,
        "vicreg": vicreg,
        "nnclr": simclr,
        "random": simclr,
    }
    return by_method, test


def run_lightly(method: str, epochs: int, data: str, out: str, workers: int, seed: int) -> None:
    import pytorch_lightning as pl
    import torch
    from lightly.data import LightlyDataset

    pl.seed_everything(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    transforms, test_transform = lightly_transforms()
    train_ssl = LightlyDataset(input_dir=os.path.join(data, "train"), transform=transforms[method])
    loader = torch.utils.data.DataLoader(
        train_ssl,
        batch_size=BATCH_SIZE,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    model = lightly_models(max(epochs * len(loader), 1))[method]()
    start = time.time()
    if epochs:
        optim, scheduler = model.configure_optimizers()
        model.train()
        for epoch in range(epochs):
            epoch_start, total = time.time(), 0.0
            for step, batch in enumerate(loader):
                loss = model.training_step(batch)
                optim.zero_grad()
                loss.backward()
                optim.step()
                scheduler.step()
                total += float(loss.detach())
                if step % 50 == 0:
                    print(f"epoch {epoch} step {step}/{len(loader)} loss {float(loss):.4f}", flush=True)
            print(f"epoch {epoch}: mean loss {total / len(loader):.4f}, {time.time() - epoch_start:.0f} s", flush=True)
    train_seconds = time.time() - start

    def features(split: str):
        dataset = LightlyDataset(input_dir=os.path.join(data, split), transform=test_transform)
        loader = torch.utils.data.DataLoader(dataset, batch_size=512, shuffle=False, num_workers=workers)
        rows, labels = [], []
        model.backbone.eval()
        with torch.no_grad():
            for images, targets, _ in loader:
                rows.append(model.backbone(images).flatten(start_dim=1).numpy())
                labels.append(targets.numpy())
        return np.concatenate(rows), np.concatenate(labels), dataset.dataset.classes

    train_x, train_y, classes = features("train")
    test_x, test_y, _ = features("test")
    np.savez(
        out,
        train_features=train_x,
        train_labels=train_y,
        test_features=test_x,
        test_labels=test_y,
        classes=np.array(classes),
        framework="lightly",
        method=method,
        epochs=epochs,
        seed=seed,
        train_seconds=train_seconds,
    )


# ---------------------------------------------------------------------------------------
# Our side and the evaluator (TensorFlow)


def run_ours(method: str, epochs: int, data: str, out: str, model_dir: str, seed: int) -> None:
    import keras

    from contrastive_tf.data import load_data
    from contrastive_tf.encoders import build_encoder
    from contrastive_tf.evaluation import extract_features
    from contrastive_tf.run_folder import load_pretrained

    start = time.time()
    if method == "random":
        keras.utils.set_random_seed(seed)
        encoder = build_encoder(
            "resnet18",
            (32, 32, 3),
            WIDTH,
            zero_init_residual=ZERO_INIT_RESIDUAL,
            input_normalization=INPUT_NORMALIZATION,
            initializer=INITIALIZER,
        )
    else:
        command = [sys.executable, "-m", "experiments.pretrain", *pretrain_flags(method, epochs, data, model_dir, seed)]
        print(" ".join(command), flush=True)
        subprocess.run(command, cwd=REPO, check=True)
        encoder = load_pretrained(model_dir).encoder
    train_seconds = time.time() - start
    loaded = load_data(data)
    train_x, train_y = extract_features(encoder, loaded.train)
    test_x, test_y = extract_features(encoder, loaded.test)
    np.savez(
        out,
        train_features=train_x,
        train_labels=train_y,
        test_features=test_x,
        test_labels=test_y,
        classes=np.array(loaded.class_names or []),
        framework="ours",
        method=method,
        epochs=epochs,
        seed=seed,
        train_seconds=train_seconds,
    )


def score(features: str, results: str) -> None:
    from contrastive_tf.evaluation import linear_probe
    from contrastive_tf.knn import knn_accuracy

    saved = np.load(features)
    train = saved["train_features"], saved["train_labels"]
    test = saved["test_features"], saved["test_labels"]
    num_classes = int(max(train[1].max(), test[1].max()) + 1)
    knn = knn_accuracy(train, test, num_classes)
    linear = linear_probe(*train, *test, num_classes).top1_accuracy
    row = [
        str(saved["method"]),
        str(saved["framework"]),
        str(int(saved["epochs"])),
        f"{100 * knn:.2f}",
        f"{100 * linear:.2f}",
        f"{float(saved['train_seconds']) / 60:.1f}",
        str(int(saved["seed"])) if "seed" in saved else "0",
    ]
    new = not os.path.exists(results)
    with open(results, "a") as file:
        if new:
            file.write("method\tframework\tepochs\tknn_top1\tlinear_top1\ttrain_minutes\tseed\n")
        file.write("\t".join(row) + "\n")
    print("\t".join(row), flush=True)


def run_all(methods: list[str], epochs: int, data: str, work: str, peer_python: str, workers: int, seed: int) -> None:
    os.makedirs(work, exist_ok=True)
    results = os.path.join(work, "results.tsv")
    script = os.path.abspath(__file__)
    for method in methods:
        for framework in ("lightly", "ours"):
            name = f"{method}_{framework}_{epochs}ep" + (f"_seed{seed}" if seed else "")
            out = os.path.join(work, f"{name}.npz")
            common = [f"--method={method}", f"--epochs={epochs}", f"--data={data}", f"--out={out}", f"--seed={seed}"]
            if framework == "lightly":
                command = [peer_python, script, "lightly", *common, f"--workers={workers}"]
            else:
                model_dir = os.path.join(work, name)
                command = [sys.executable, script, "ours", *common, f"--model_dir={model_dir}"]
            if not os.path.exists(out):
                subprocess.run(command, cwd=REPO, check=True)
            subprocess.run(
                [sys.executable, script, "score", f"--features={out}", f"--results={results}"], cwd=REPO, check=True
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("lightly", "ours"):
        side = commands.add_parser(name)
        side.add_argument("--method", choices=(*METHODS, "random"), required=True)
        side.add_argument("--epochs", type=int, required=True)
        side.add_argument("--data", required=True)
        side.add_argument("--out", required=True)
        side.add_argument("--seed", type=int, default=0)
        if name == "lightly":
            side.add_argument("--workers", type=int, default=2)
        else:
            side.add_argument("--model_dir", required=True)
    scorer = commands.add_parser("score")
    scorer.add_argument("--features", required=True)
    scorer.add_argument("--results", required=True)
    everything = commands.add_parser("run")
    everything.add_argument("--methods", default=",".join(METHODS))
    everything.add_argument("--epochs", type=int, required=True)
    everything.add_argument("--data", required=True)
    everything.add_argument("--work", required=True)
    everything.add_argument("--peer_python", required=True)
    everything.add_argument("--workers", type=int, default=2)
    everything.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "lightly":
        run_lightly(args.method, args.epochs, args.data, args.out, args.workers, args.seed)
    elif args.command == "ours":
        run_ours(args.method, args.epochs, args.data, args.out, args.model_dir, args.seed)
    elif args.command == "score":
        score(args.features, args.results)
    else:
        run_all(args.methods.split(","), args.epochs, args.data, args.work, args.peer_python, args.workers, args.seed)


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    main()
