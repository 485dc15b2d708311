"""Training images: loaded once into memory (on the GPU when there is one), cropped there."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_images(folders: Sequence[str]) -> list[str]:
    """Every image file directly inside the given folders (glob patterns allowed), sorted."""
    paths: list[str] = []
    for pattern in folders:
        for folder in sorted(glob.glob(pattern)) or [pattern]:
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"training folder not found: {folder}")
            paths += [
                os.path.join(folder, name)
                for name in sorted(os.listdir(folder))
                if name.lower().endswith(IMAGE_SUFFIXES)
            ]
    return paths


def load_rgb(path: str, min_side: int) -> torch.Tensor | None:
    """An image as a uint8 (3, H, W) tensor, or None when it is smaller than a crop."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if min(img.size) < min_side:
            return None
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


class CropSampler:
    """Random crops with random flips from images held in memory as uint8.

    Args:
        images: uint8 tensors (3, H, W), each at least ``crop`` on both sides.
        crop: side of the square crops.
        device: where the images live and where batches are made.
        generator_seed: seed of the sampler's own random generator.
    """

    def __init__(self, images: list[torch.Tensor], crop: int, device: torch.device, generator_seed: int = 0):
        if not images:
            raise ValueError(f"no training image is at least {crop} pixels on its shorter side")
        self.images = [im.to(device) for im in images]
        self.crop = crop
        self.device = device
        self.rng = np.random.default_rng(generator_seed)

    def batch(self, size: int) -> torch.Tensor:
        """A float batch (size, 3, crop, crop) in [0, 1]."""
        c = self.crop
        out = torch.empty((size, 3, c, c), dtype=torch.uint8, device=self.device)
        picks = self.rng.integers(0, len(self.images), size)
        for i, k in enumerate(picks):
            im = self.images[k]
            top = int(self.rng.integers(0, im.shape[1] - c + 1))
            left = int(self.rng.integers(0, im.shape[2] - c + 1))
            patch = im[:, top : top + c, left : left + c]
            if self.rng.random() < 0.5:
                patch = patch.flip(2)
            if self.rng.random() < 0.5:
                patch = patch.flip(1)
            out[i] = patch
        return out.float().div_(255.0)


def center_crops(images: list[torch.Tensor], side: int) -> torch.Tensor:
    """Centre crops of the given images, as one float batch in [0, 1]."""
    crops = []
    for im in images:
        top = (im.shape[1] - side) // 2
        left = (im.shape[2] - side) // 2
        crops.append(im[:, top : top + side, left : left + side])
    return torch.stack(crops).float().div_(255.0)
