"""Train the digits models shipped in ``plugins/cachekit_digits/weights``.

Reproducible on one CPU core (seeded, single-threaded)::

    python scripts/train_digits.py classifier   # ~2 min, >= 97% test accuracy
    python scripts/train_digits.py unet         # DDPM UNet2DModel, ~30 min
    python scripts/train_digits.py dit          # class-conditional DiT, ~30 min

Each command writes its model folder under ``--out`` (default: the package's weights
folder). The diffusion models are trained with the epsilon objective on the DDPM cosine
schedule, keep an exponential moving average of their weights, and are saved as diffusers
pipelines (``DDIMPipeline`` for the UNet, ``DigitsDiTPipeline`` for the DiT) in float16
safetensors, loaded back in float32 with ``from_pretrained``.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from cachekit_digits.architectures import NULL_CLASS, SCHEDULER_CONFIG, build_dit, build_unet
from cachekit_digits.classifier import DigitClassifier
from cachekit_digits.data import load_digits
from cachekit_digits.models import WEIGHTS_DIR


def _batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, steps: int):
    """``steps`` shuffled batches, cycling through epochs."""
    order = torch.randperm(len(labels))
    position = 0
    for _ in range(steps):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(labels)), 0
        index = order[position : position + batch_size]
        position += batch_size
        yield images[index], labels[index]


def _shift(images: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    """Random translation by up to ``pixels`` in each direction (background is -1)."""
    padded = F.pad(images, (pixels,) * 4, value=-1.0)
    size = images.shape[-1]
    dx, dy = torch.randint(0, 2 * pixels + 1, (2,)).tolist()
    return padded[..., dy : dy + size, dx : dx + size]


def _learning_rate(step: int, steps: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_classifier(args: argparse.Namespace) -> None:
    """Train the digit classifier and report its test accuracy."""
    images, labels = load_digits("train")
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr or 2e-3, weight_decay=1e-4)
    for step, (x, y) in enumerate(_batches(images, labels, args.batch_size, args.steps)):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, args.steps, args.lr or 2e-3)
        loss = F.cross_entropy(model(_shift(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.log_every == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    test_images, test_labels = load_digits("test")
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    print(f"test accuracy {accuracy:.4f} on {len(test_labels)} images", flush=True)
    model.save_pretrained(Path(args.out) / "classifier")


def _train_diffusion(
    args: argparse.Namespace, model: torch.nn.Module, predict: Callable, save: Callable[[torch.nn.Module], None]
) -> None:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**SCHEDULER_CONFIG)
    images, labels = load_digits("train")
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr or 1e-3, weight_decay=0.0)
    start = time.time()
    for step, (x0, y) in enumerate(_batches(images, labels, args.batch_size, args.steps)):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, args.steps, args.lr or 1e-3)
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),))
        loss = F.mse_loss(predict(model, scheduler.add_noise(x0, noise, t), t, y), noise)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for averaged, current in zip(ema.parameters(), model.parameters(), strict=True):
                averaged.lerp_(current, 1 - decay)
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} elapsed {time.time() - start:.0f}s", flush=True)
        if (step + 1) % args.save_every == 0 or step == args.steps - 1:
            save(ema)
            print(f"saved at step {step + 1}", flush=True)


def train_unet(args: argparse.Namespace) -> None:
    """Train the unconditional DDPM UNet and save it as a ``DDIMPipeline``."""
    from diffusers import DDIMPipeline, DDIMScheduler

    def predict(model, noisy, t, labels):
        return model(noisy, t).sample

    def save(ema):
        pipe = DDIMPipeline(unet=copy.deepcopy(ema).half(), scheduler=DDIMScheduler(**SCHEDULER_CONFIG))
        pipe.save_pretrained(Path(args.out) / "unet")

    _train_diffusion(args, build_unet(), predict, save)


def train_dit(args: argparse.Namespace) -> None:
    """Train the class-conditional DiT (10% null labels for guidance) and save a ``DigitsDiTPipeline``."""
    from cachekit_digits.pipeline import DigitsDiTPipeline
    from diffusers import DDIMScheduler

    def predict(model, noisy, t, labels):
        dropped = torch.rand(len(labels)) < args.label_dropout
        labels = torch.where(dropped, torch.full_like(labels, NULL_CLASS), labels)
        return model(noisy, timestep=t, class_labels=labels).sample

    def save(ema):
        pipe = DigitsDiTPipeline(transformer=copy.deepcopy(ema).half(), scheduler=DDIMScheduler(**SCHEDULER_CONFIG))
        pipe.save_pretrained(Path(args.out) / "dit")

    _train_diffusion(args, build_dit(), predict, save)


def main() -> None:
    """Parse the command line and train one model."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=("classifier", "unet", "dit"))
    parser.add_argument("--out", default=str(WEIGHTS_DIR), help="folder receiving the model folder")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: 1500 classifier, 2400 unet/dit)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, help="peak learning rate (default 2e-3 classifier, 1e-3 diffusion)")
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved diffusion weights")
    parser.add_argument("--label-dropout", type=float, default=0.1, help="DiT: share of null-class labels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--save-every", type=int, default=400)
    args = parser.parse_args()
    args.steps = args.steps or (1500 if args.model == "classifier" else 2400)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    {"classifier": train_classifier, "unet": train_unet, "dit": train_dit}[args.model](args)


if __name__ == "__main__":
    main()
