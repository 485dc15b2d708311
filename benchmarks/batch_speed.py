"""A folder of small images through the command line against the same images through the API:
what a batch costs a file beyond the coding itself.

    python benchmarks/batch_speed.py [--files 300] [--side 128] [--images ../shared/data/kodak] [--json FILE]

The images are crops of ``--side`` pixels cut from the Kodak photos (``batch_memory.py``'s
synthetic photo-like images where the folder is absent), written as PNG to a temporary folder. Measured, in this
order and each on the command line's default settings (threads and jobs, the CPU provider):

- the API: one ``Codec``, each file encoded from its path and the bytes written to a file, then
  each ``.nic`` decoded and saved as PNG: seconds per file;
- ``nicodec encode FOLDER -o OUT`` and ``nicodec decode OUT -o PNGS`` in a subprocess, and the
  same commands on one file (the start of a command: Python, the imports, the model's sessions):
  seconds per file of the folder's run beyond the one-file run's, ``(folder - one) / (files - 1)``.

The ratio command line / API is the batch's own cost (its checks, atomic writes, progress and
report). 2026-12-05, AMD EPYC, 2 cores, 300 crops of 128x128 (``benchmarks/results/batch_speed.json``):
nicodec 0.6.5 stood at 1.93 to encode and 1.41 to decode, its onnxruntime threads pinned to cores
(:func:`nicodec.machine.default_threads`; a calling thread moved onto a pinned core shared it),
0.6.6 at 1.12 to 1.29 and 1.03 to 1.08 in two runs. Linux and macOS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from batch_memory import photo
from common import image_paths, whole_number, write_report

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"


def crops(folder: Path | None, count: int, side: int) -> list[np.ndarray]:
    """``count`` crops of ``side`` pixels, row by row from each image in turn."""
    sources = [np.asarray(Image.open(p).convert("RGB")) for p in image_paths(folder)] if folder and folder.is_dir() else []
    if not sources:  # batch_memory.py's photo-like images, Kodak's size
        rng = np.random.default_rng(0)
        sources = [photo(512, 768, rng) for _ in range(4)]
    made = []
    while len(made) < count:
        for image in sources:
            k = len(made) // len(sources)
            per_row = image.shape[1] // side
            y, x = (k // per_row) * side % max(image.shape[0] - side + 1, 1), (k % per_row) * side
            made.append(image[y : y + side, x : x + side])
            if len(made) == count:
                break
    return made


def command(*args) -> float:
    """Seconds a ``nicodec`` command takes, run as a user runs it."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nicodec", *map(str, args)], check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=whole_number(2), default=300, help="images in the folder (default 300)")
    parser.add_argument("--side", type=whole_number(16), default=128, help="their side in pixels (default 128)")
    parser.add_argument("--images", type=Path, default=KODAK, help=f"the photos cropped (default: {KODAK})")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from nicodec import Codec

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder, api, one = root / "in", root / "api", root / "one"
        for made in (folder, api, one):
            made.mkdir()
        for number, crop in enumerate(crops(args.images, args.files, args.side)):
            Image.fromarray(crop).save(folder / f"{number:05d}.png")
        paths = sorted(folder.iterdir())
        os.link(paths[0], one / paths[0].name)

        codec = Codec(providers="cpu")
        codec.decode(codec.encode(paths[0]))  # the sessions made, as the command's are before its files
        start = time.perf_counter()
        for path in paths:
            (api / f"{path.stem}.nic").write_bytes(codec.encode(path))
        api_encode = (time.perf_counter() - start) / len(paths)
        start = time.perf_counter()
        for path in sorted(api.iterdir()):
            codec.decode(path).save(api / f"{path.stem}.png")
        api_decode = (time.perf_counter() - start) / len(paths)
        del codec

        folder_encode = command("encode", folder, "-o", root / "nic", "--provider", "cpu")
        one_encode = command("encode", one, "-o", root / "one-nic", "--provider", "cpu")
        folder_decode = command("decode", root / "nic", "-o", root / "png", "--provider", "cpu")
        one_decode = command("decode", root / "one-nic", "-o", root / "one-png", "--provider", "cpu")
    cli_encode = (folder_encode - one_encode) / (len(paths) - 1)
    cli_decode = (folder_decode - one_decode) / (len(paths) - 1)
    report = {
        "files": len(paths), "side": args.side,
        "images": str(args.images) if args.images.is_dir() else "synthetic",
        "api_seconds_per_file": {"encode": round(api_encode, 5), "decode": round(api_decode, 5)},
        "command_seconds": {"encode": round(folder_encode, 3), "encode_one": round(one_encode, 3),
                            "decode": round(folder_decode, 3), "decode_one": round(one_decode, 3)},
        "command_seconds_per_file": {"encode": round(cli_encode, 5), "decode": round(cli_decode, 5)},
        "ratio_command_to_api": {"encode": round(cli_encode / api_encode, 3), "decode": round(cli_decode / api_decode, 3)},
    }
    print(f"{len(paths)} images of {args.side}x{args.side} ({report['images']}):")
    for step in ("encode", "decode"):
        print(f"  {step}: API {1e3 * report['api_seconds_per_file'][step]:.1f} ms a file, command line "
              f"{1e3 * report['command_seconds_per_file'][step]:.1f} ms a file beyond its start "
              f"({report['command_seconds'][step + '_one']:.2f} s): x{report['ratio_command_to_api'][step]:.2f}")
    if min(cli_encode, cli_decode) <= 0:  # the start's own spread outweighed the files
        print(f"warning: {len(paths)} files are too few for the command line's cost a file to show above the spread "
              "of its start (a time a file of 0 or less): give --files 100 or more")
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
