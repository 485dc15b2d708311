"""Large images: peak memory and time of tiled against whole-image processing, and whether they agree.

    python benchmarks/large_image.py [--size 3072x3072] [--tiled-only] [--small-tiles] [--alpha] [--json FILE]

The image is a mosaic of Kodak photos (mirrored tiles of ``../shared/data/kodak``; a
synthetic photo-like image when Kodak is absent). Each measurement runs in a fresh
process, so its peak resident memory (``ru_maxrss``) belongs to that operation alone:
encode and decode, once with the default tiles (1024 pixels, with 192 of margin for the
analysis and 64 for the synthesis) and once
whole (one tile larger than the image), and with ``--small-tiles`` at tiles of 512 and 256
pixels too (what an edge board with 1 to 2 GB would use, ``--tile`` on the command line),
checking that they make the same file; ``--margin`` sets the analysis's margin (the
synthesis's is half of it, at least 64). Peaks are in MiB (``peak_rss_mb``: ``ru_maxrss`` /
1024). ``--alpha`` cuts the mosaic out as
``benchmarks/transparency.py --shape ellipse`` does (black under an ellipse's outside, a soft
rim): what the fill of the hidden colour and the alpha section add. Linux and macOS only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import psnr, write_report

HERE = Path(__file__).resolve().parent
KODAK = HERE.parent.parent / "shared" / "data" / "kodak"

CHILD = r"""
import resource, sys, time
import numpy as np
from nicodec import Codec
op, tile, image_path, nic_path, out_path, margin = sys.argv[1], int(sys.argv[2]), *sys.argv[3:7]
codec = Codec(providers="cpu", threads=2, tile=tile, **({} if margin == "default" else {"margin": int(margin)}))
start = time.perf_counter()
if op == "encode":
    data = codec.encode(np.load(image_path))
    open(nic_path, "wb").write(data)
else:
    np.save(out_path, codec.decode(open(nic_path, "rb").read(), as_array=True))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, peak / 2**20 if sys.platform == "darwin" else peak / 2**10)
"""


def mosaic(height: int, width: int):
    import numpy as np
    from PIL import Image

    paths = sorted(KODAK.glob("*.png"))
    if not paths:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        img = np.stack([128 + 90 * np.sin(xx / (23 + 7 * c)) * np.cos(yy / 31.0) for c in range(3)], axis=2)
        return np.clip(img + np.random.default_rng(0).normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    tiles = [np.asarray(Image.open(p).convert("RGB"))[:512, :512] for p in paths]
    rows = []
    for r in range(-(-height // 512)):
        row = [tiles[(r * 7 + c) % len(tiles)] for c in range(-(-width // 512))]
        rows.append(np.concatenate([t if (i + r) % 2 else t[:, ::-1] for i, t in enumerate(row)], axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


def measure(op: str, tile: int, folder: Path, tag: str, margin: int | None = None) -> dict:
    args = [sys.executable, "-c", CHILD, op, str(tile), str(folder / "image.npy"),
            str(folder / f"{tag}.nic"), str(folder / f"{tag}.npy"), "default" if margin is None else str(margin)]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    seconds, peak = map(float, result.stdout.split())
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1)}


def main(argv: list[str] | None = None) -> dict:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="3072x3072", help="WIDTHxHEIGHT")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tiled-only", action="store_true",
                        help="skip whole-image processing (which needs tens of GB at 24 megapixels)")
    parser.add_argument("--small-tiles", action="store_true", help="also tiles of 512 and 256 pixels")
    parser.add_argument("--alpha", action="store_true", help="an RGBA cut-out (an ellipse) instead of the RGB mosaic")
    parser.add_argument("--margin", type=int, default=None,
                        help="the analysis's tile margin (Codec(margin=); default: the codec's, 192 pixels)")
    args = parser.parse_args(argv)
    width, height = map(int, args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        image = mosaic(height, width)
        if args.alpha:
            from transparency import cut_out

            image = np.dstack(cut_out(image, "black", "ellipse"))
        np.save(folder / "image.npy", image)
        rows = {}
        modes = (("tiled", 1024),) if args.tiled_only else (("tiled", 1024), ("whole", 1 << 16))
        if args.small_tiles:
            modes += (("tile 512", 512), ("tile 256", 256))
        for name, tile in modes:
            rows[name] = {"encode": measure("encode", tile, folder, name, args.margin),
                          "decode": measure("decode", tile, folder, name, args.margin)}
            print(f"{name:>8}: encode {rows[name]['encode']['seconds']:6.2f} s, peak {rows[name]['encode']['peak_rss_mb']:7.0f} MiB; "
                  f"decode {rows[name]['decode']['seconds']:6.2f} s, peak {rows[name]['decode']['peak_rss_mb']:7.0f} MiB", flush=True)
        size = (folder / "tiled.nic").stat().st_size
        alpha_bytes = None
        if args.alpha:
            from nicodec import alpha as alpha_section
            from nicodec import format as nicformat

            sections = nicformat.unpack((folder / "tiled.nic").read_bytes())[1]
            tag = alpha_section.find(sections)
            alpha_bytes = {tag.decode(): len(sections[tag])}
            print(f"alpha section: {alpha_bytes}")
        small_same = {name: (folder / f"{name}.nic").read_bytes() == (folder / "tiled.nic").read_bytes()
                      for name in rows if name.startswith("tile ")}
        if small_same:
            print(f"files at smaller tiles identical to the default's: {small_same}")
        decoded = {name: np.load(folder / f"{name}.npy") for name in rows}
        if args.alpha:
            assert all(np.array_equal(pixels[:, :, 3], image[:, :, 3]) for pixels in decoded.values())
            visible = image[:, :, 3] > 0  # the PSNR a viewer sees; the hidden colour is filled
            quality = {name: round(psnr(pixels[visible][:, :3], image[visible][:, :3]), 4) for name, pixels in decoded.items()}
        else:
            quality = {name: round(psnr(pixels, image), 4) for name, pixels in decoded.items()}
        same_file = differing = None
        if "whole" in rows:
            same_file = (folder / "tiled.nic").read_bytes() == (folder / "whole.nic").read_bytes()
            # Each decode of its own file: the pixels compare the synthesis run tiled and whole.
            tiled, whole = decoded["tiled"], decoded["whole"]
            differing = int(np.count_nonzero(tiled != whole))
            largest = int(np.abs(tiled.astype(np.int16) - whole).max())
            print(f"{width}x{height}: tiled and whole files {'identical' if same_file else 'DIFFER'}; "
                  f"{differing:,} of {tiled.size:,} pixel values differ (by at most {largest})")
    print(f"{width}x{height}: PSNR {quality}; {size:,} bytes, {8 * size / (width * height):.4f} bpp")
    report = {
        "size": [width, height], "alpha": args.alpha, "margin": args.margin or "default", "results": rows,
        "identical_files": same_file,
        "pixel_values_differing": differing, "psnr_db": quality, "small_tile_files_identical": small_same or None,
        "bytes": size, "bpp": round(8 * size / (width * height), 4), "alpha_section_bytes": alpha_bytes,
    }
    write_report(args.json, report)
    return report


if __name__ == "__main__":
    main()
