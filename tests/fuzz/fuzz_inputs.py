#!/usr/bin/env python3
"""Fuzz the reading of images to encode: damaged PNG, JPEG, TIFF, WebP, AVIF, GIF, BMP, ... files.

Usage:

    python tests/fuzz/fuzz_inputs.py                       # 20,000 mutated files, seed 0
    python tests/fuzz/fuzz_inputs.py --runs 100000 --seed 7 --keep findings/

Every input is a small image in one of the formats and modes users hand nicodec, with the
metadata it keeps (an ICC profile, EXIF with an orientation and a resolution, XMP, text, a
density), damaged by a few byte changes, 32-bit writes, cuts and insertions. Each goes through
``nicodec.images.read_picture``, the whole of what ``Codec.encode`` does before the networks
(Pillow's open and load, orientation, metadata). It must give a picture or raise a
``NicodecError`` (``UnsupportedImageError``, ``LimitError``): any other exception is a finding,
an internal error for a user. The networks are not run (a picture read is coded as any other).

Prints how many inputs ended each way and each kind of finding with where it was raised, saves
one input of each kind under ``--keep``, and exits 1 if there was a finding. Pillow's TIFF
reader (libtiff) prints its own complaints about damaged files on stderr; they are not findings.
"""

from __future__ import annotations

import argparse
import collections
import io
import random
import struct
import sys
import traceback
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, features

from nicodec.errors import NicodecError
from nicodec.images import read_picture

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for profiles.py
from profiles import cmyk_profile


def seeds() -> list[bytes]:
    """Small images in the formats, modes and metadata users hand nicodec."""
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x011A], exif[0x011B], exif[0x0128] = 6, "a camera", 300.0, 150.0, 2
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="8"/></x:xmpmeta>'
    icc = bytes(range(128)) * 4  # written as it is
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "me")
    text.add_text("parameters", "steps: 30\n" * 300, zip=True)
    text.add_itxt("XML:com.adobe.xmp", xmp.decode())
    made = [
        (image, "PNG", {"pnginfo": text, "exif": exif.tobytes(), "dpi": (300, 150)}),
        (image, "JPEG", {"exif": exif.tobytes(), "xmp": xmp, "comment": b"hello", "dpi": (300, 150)}),
        (image, "JPEG", {"progressive": True, "exif": exif.tobytes()}),
        (image.convert("CMYK"), "JPEG", {"icc_profile": icc}),
        (image, "TIFF", {"exif": exif.tobytes(), "dpi": (300, 150)}),
        (image, "TIFF", {"compression": "tiff_deflate", "dpi": (72.5, 96)}),
        (Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 200), "TIFF", {}),
        (image, "WEBP", {"exif": exif.tobytes(), "xmp": xmp, "lossless": True}),
        (image, "WEBP", {"exif": exif.tobytes(), "quality": 80}),
        (image, "BMP", {"dpi": (300, 150)}),
        (image.quantize(16), "GIF", {"comment": b"a comment"}),
        (image.quantize(8), "PNG", {"transparency": 3}),
        (image.convert("LA"), "PNG", {}),
        (Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257), "PNG", {}),
        (Image.fromarray(np.dstack([pixels, pixels[:, :, :1]]), "RGBA"), "PNG", {}),
        (image, "PNG", {"save_all": True, "append_images": [Image.fromarray(pixels[::-1].copy())]}),  # APNG
        (image, "PPM", {}),
        (image, "QOI", {}),
        (image, "TGA", {}),
        (image, "ICO", {}),
    ]
    press = cmyk_profile()  # converts the pixels (tests/profiles.py)
    made += [
        (image.convert("CMYK"), "JPEG", {"icc_profile": press, "exif": exif.tobytes()}),
        (image.convert("CMYK"), "TIFF", {"icc_profile": press}),
        (image, "PNG", {"icc_profile": press[:128] + bytes(1_200_000)}),  # inflates past Pillow's 1 MiB
    ]
    if features.check("avif"):
        made.append((image, "AVIF", {"exif": exif.tobytes(), "quality": 90}))
    if features.check("jpg_2000"):
        made.append((image, "JPEG2000", {}))
    try:
        import pillow_heif
    except ImportError:
        pass
    else:
        pillow_heif.register_heif_opener()
        made.append((image, "HEIF", {"exif": exif.tobytes(), "quality": 90}))
    out = []
    for picture, fmt, options in made:
        buffer = io.BytesIO()
        picture.save(buffer, fmt, **options)
        out.append(buffer.getvalue())
    png = out[0]  # with a cICP chunk (Display P3, PQ) after its header
    body = b"cICP" + bytes([12, 16, 0, 1])
    out.append(png[:33] + struct.pack(">I", 4) + body + struct.pack(">I", zlib.crc32(body)) + png[33:])
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few byte changes, 32-bit writes of telling values, cuts and insertions; sometimes a cut end."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at, kind = rng.randrange(len(out)), rng.random()
        if kind < 0.6:
            out[at] = rng.randrange(256)
        elif kind < 0.75:
            value = rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, 2**31, rng.randrange(2**32)])
            out[at : at + 4] = struct.pack(rng.choice("<>") + "I", value)
        elif kind < 0.85:
            del out[at : at + rng.randint(1, 16)]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    if rng.random() < 0.1:
        out = out[: rng.randrange(8, max(9, len(out)))]
    return bytes(out)


def run(runs: int, seed: int, keep: Path | None = None) -> dict:
    """``runs`` mutated inputs from ``seed``: the counts of each outcome, and the findings
    (kind, message and where, to how many inputs)."""
    rng = random.Random(seed)
    pool = seeds()
    outcomes: collections.Counter = collections.Counter()
    findings: collections.Counter = collections.Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nicodec's warnings of metadata left out, Pillow's of damage
        for _ in range(runs):
            data = mutate(rng.choice(pool), rng)
            try:
                read_picture(data)
                outcomes["read"] += 1
            except NicodecError as exc:
                outcomes[type(exc).__name__] += 1
            except Exception as exc:  # noqa: BLE001 - what this looks for
                frames = traceback.extract_tb(exc.__traceback__)
                ours = [f"{Path(f.filename).name}:{f.lineno}" for f in frames if "nicodec" in f.filename
                        or f"{Path('runtime')}" in f.filename]
                kind = (type(exc).__name__, str(exc)[:80], ours[-1] if ours else "?",
                        f"{Path(frames[-1].filename).name}:{frames[-1].lineno}")
                if kind not in findings and keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / f"finding-{len(findings)}.bin").write_bytes(data)
                findings[kind] += 1
    return {"outcomes": dict(outcomes), "findings": findings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="a folder for one input of each kind of finding")
    args = parser.parse_args(argv)
    result = run(args.runs, args.seed, args.keep)
    print(f"{args.runs:,} inputs: " + ", ".join(f"{n:,} {what}" for what, n in sorted(result["outcomes"].items())))
    for (kind, message, ours, raised), count in result["findings"].most_common():
        print(f"{count:>7}  {kind}: {message} (from {ours}, raised in {raised})")
    return 1 if result["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
