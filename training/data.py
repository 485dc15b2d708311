"""Training images: loaded once into memory (on the GPU when there is one), cropped there."""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_images(folders: Sequence[str]) -> list[str]:
    """Every image file directly inside the given folders (glob patterns allowed), sorted.

    Raises:
        FileNotFoundError: a pattern that matches nothing, or a name that is not a folder.
    """
    paths: list[str] = []
    for pattern in folders:
        matches = sorted(glob.glob(pattern))
        if any(c in pattern for c in "*?["):  # a pattern picks folders: files beside them (a README) are passed over
            files = [match for match in matches if not os.path.isdir(match)]
            matches = [match for match in matches if os.path.isdir(match)]
            images = [name for name in files if name.lower().endswith(IMAGE_SUFFIXES)]
            if matches and images:  # photos of their own beside the folders: not passed over in silence
                raise FileNotFoundError(
                    f"{pattern} matches images ({images[0]}{f' and {len(images) - 1} more' if len(images) > 1 else ''}) "
                    "beside folders: --data takes folders; give the folder that holds them as well")
            if not matches:
                raise FileNotFoundError(f"no folder matches {pattern}" + (
                    f" (it matches {len(files)} file{'s' if len(files) > 1 else ''}: give the folder that holds them)"
                    if files else ""))
        for folder in matches or [pattern]:
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"not a folder: {folder} (give the folder that holds it)" if os.path.exists(folder)
                                        else f"folder not found: {folder}")
            paths += [
                path
                for path in (os.path.join(folder, name) for name in sorted(os.listdir(folder)))
                # A named pipe or a device is passed over: read to its end, a pipe no one writes to
                # would hang the loader (a missing file, a broken link, is kept, to be named).
                if path.lower().endswith(IMAGE_SUFFIXES) and (os.path.isfile(path) or not os.path.exists(path))
            ]
    return paths


def subfolder_hint(folders: Sequence[str]) -> str:
    """For folders with no image directly inside: how to read their subfolders', if they have any."""
    for pattern in folders:
        for folder in sorted(glob.glob(pattern)) or [pattern]:
            try:
                with os.scandir(folder) as entries:  # any() may stop early: closed here, not by the collector
                    if any(entry.is_dir() for entry in entries):
                        return (f" (images in subfolders are not read: --data '{os.path.join(pattern, '*')}' reads "
                                "each subfolder)")
            except OSError:
                continue
    return ""


def held_out_copies(paths: Sequence[str], held_out: Sequence[str]) -> set[str]:
    """The paths among ``paths`` that are held-out files, or copies of one (the same bytes): a
    folder of held-out images is often copies of a set's last files (``data/gpu/val`` holds
    those of shard 5), which comparing paths, even resolved, does not catch. Only files of a
    held-out file's size are read; a file that cannot be read is no copy (loading names it)."""
    from nicodec.model import sha256_file

    def digest(path: str) -> str | None:
        try:
            return sha256_file(Path(path))
        except OSError:
            return None

    def size(path: str) -> int | None:
        try:
            return os.path.getsize(path)
        except OSError:
            return None

    real = {os.path.realpath(p) for p in held_out}
    held_sizes = {p: size(p) for p in held_out}
    same_file = {p for p in paths if os.path.realpath(p) in real}
    candidates = {p: size(p) for p in paths if p not in same_file}
    candidates = {p: n for p, n in candidates.items() if n is not None and n in held_sizes.values()}
    digests = {digest(p) for p, n in held_sizes.items() if n in candidates.values()} - {None}
    return same_file | {p for p in candidates if digest(p) in digests}


def shorter_side(path: str) -> int:
    """The shorter side of an image in pixels, read from its header alone; 0 for a file Pillow
    cannot open (left out like a small image; :func:`load_rgb` names what is wrong)."""
    try:
        with Image.open(path) as img:
            return min(img.size)
    except (OSError, SyntaxError, ValueError):
        return 0


class UnreadableImageError(ValueError):
    """A training image that cannot be read; the message names it and says why."""


class _Small(Exception):
    """Raised from the size check to skip decoding an image smaller than a crop."""


def load_rgb(path: str, min_side: int) -> torch.Tensor | None:
    """An image as a uint8 (3, H, W) tensor, or None when it is smaller than a crop (known from
    its header, before its pixels are decoded).

    Read as the codec reads what it encodes (``nicodec.images.read_picture``): grayscale,
    palette, CMYK and 16-bit images become 8-bit RGB (16-bit ones keep their top 8 bits,
    where a plain ``convert("RGB")`` clipped them to white), the EXIF orientation is applied,
    and transparency is left out.

    Raises:
        UnreadableImageError: not an image, truncated, several frames, or a mode it cannot code.
    """
    from nicodec.errors import NicodecError
    from nicodec.images import read_picture

    def check(width: int, height: int) -> None:
        if min(width, height) < min_side:
            raise _Small

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # training photos may be large
            picture = read_picture(path, strip=True, check_size=check)
    except _Small:
        return None
    except NicodecError as exc:
        raise UnreadableImageError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    return torch.from_numpy(np.array(picture.rgb)).permute(2, 0, 1).contiguous()  # a copy: the array is read-only


def load_rgb_or_warn(path: str, min_side: int, warn: Callable[[str], None]) -> torch.Tensor | None:
    """:func:`load_rgb`, an image that cannot be read being left out too (None), with a warning
    through ``warn``."""
    try:
        return load_rgb(path, min_side)
    except UnreadableImageError as exc:
        warn(f"warning: {exc} (left out)")
        return None


def load_images(paths: Sequence[str], min_side: int) -> tuple[list[torch.Tensor], int, list[str]]:
    """The images of ``paths`` at least ``min_side`` on their shorter side, how many were
    smaller, and the problems of those that could not be read (left out, each named)."""
    images, small, problems = [], 0, []
    for path in paths:
        try:
            image = load_rgb(path, min_side)
        except UnreadableImageError as exc:
            problems.append(str(exc))
            continue
        if image is None:
            small += 1
        else:
            images.append(image)
    return images, small, problems


class CropSampler:
    """Random crops with random flips from images held in memory as uint8.

    All images live in one flat buffer on the device; a batch is a single gather whose
    indices are computed there from random draws made there, so making a batch neither
    waits for the GPU nor costs a kernel launch per crop.

    Args:
        images: uint8 tensors (3, H, W), each at least ``crop`` on both sides.
        crop: side of the square crops.
        device: where the images live and where batches are made.
        generator_seed: seed of the sampler's own random generator.
    """

    def __init__(self, images: list[torch.Tensor], crop: int, device: torch.device, generator_seed: int = 0):
        if not images:
            raise ValueError(f"no training image is at least {crop} pixels on its shorter side")
        small = [tuple(im.shape) for im in images if min(im.shape[1:]) < crop]
        if small:
            raise ValueError(f"images smaller than the {crop}-pixel crop: {small[:3]}")
        self.crop = crop
        self.device = torch.device(device)
        self.count = len(images)
        sizes = torch.tensor([im.numel() for im in images], dtype=torch.int64)
        self.flat = torch.cat([im.reshape(-1) for im in images]).to(self.device)
        self.offset = (torch.cumsum(sizes, 0) - sizes).to(self.device)
        self.height = torch.tensor([im.shape[1] for im in images], dtype=torch.int64, device=self.device)
        self.width = torch.tensor([im.shape[2] for im in images], dtype=torch.int64, device=self.device)
        self.span = torch.arange(crop, device=self.device)
        self.channel = torch.arange(3, device=self.device)
        self.reseed(generator_seed)

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed`` (a resumed run takes other crops than the run before)."""
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def _uniform(self, size: int) -> torch.Tensor:
        return torch.rand(size, generator=self.generator, device=self.device, dtype=torch.float64)

    def batch(self, size: int) -> torch.Tensor:
        """A float batch (size, 3, crop, crop) in [0, 1]."""
        c = self.crop
        picks = torch.randint(0, self.count, (size,), generator=self.generator, device=self.device)
        h, w = self.height[picks], self.width[picks]
        top = (self._uniform(size) * (h - c + 1)).long().clamp_max(h - c)
        left = (self._uniform(size) * (w - c + 1)).long().clamp_max(w - c)
        flip_rows = self._uniform(size) < 0.5
        flip_cols = self._uniform(size) < 0.5
        rows = torch.where(flip_rows[:, None], c - 1 - self.span, self.span) + top[:, None]  # (size, c)
        cols = torch.where(flip_cols[:, None], c - 1 - self.span, self.span) + left[:, None]
        base = self.offset[picks][:, None, None, None] + self.channel[None, :, None, None] * (h * w)[:, None, None, None]
        index = base + (rows * w[:, None])[:, None, :, None] + cols[:, None, None, :]
        return self.flat[index].float().div_(255.0)


def center_crops(images: list[torch.Tensor], side: int) -> torch.Tensor:
    """Centre crops of the given images, as one float batch in [0, 1]."""
    crops = []
    for im in images:
        top = (im.shape[1] - side) // 2
        left = (im.shape[2] - side) // 2
        crops.append(im[:, top : top + side, left : left + side])
    return torch.stack(crops).float().div_(255.0)
