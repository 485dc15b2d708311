"""Fill data/gpu with as much training data as the device tool can carry beside the checkout.

    python training/prepare_gpu_data.py [--shards 1] [--data CHECKOUT/../shared/data] [--budget-mib 64]

A command on the lent GPU machine sees only this checkout: its tracked and untracked (not
ignored) files plus the paths named in ``carry``, at most 64 MiB in all. This program
measures what travels anyway, then copies into the git-ignored ``data/gpu``

- ``val/``: the 8 held-out files (the last 8 of shard-5, as every run since default-1), and
- ``train/``: photos of the chosen shards in a seeded random order, each one that still fits,

so that ``bash training/gpu_run.sh`` with ``carry=["data/gpu"]`` neither fails for size nor
leaves room unused. It prints what it copied and the room left. Needs only the standard
library.

Training does not read the shipped model folder (18.6 MiB): ``--without runtime/models``
leaves it out of the count, for about 60% more photos (372 instead of 230 from shards 1
and 2), and then the folder must be moved out of the checkout for the run and back
after it (the program prints the two commands). ``--out`` must lie under the checkout's
``data/`` (it is replaced).
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
VAL_SHARD, VAL_FILES = "shard-5", 8


def travelling_bytes(root: Path, leave_out: list[Path]) -> int:
    """Bytes of the files that travel without being carried: tracked and untracked-not-ignored,
    except those under ``leave_out``.

    Raises:
        OSError: git is not installed; subprocess.CalledProcessError: ``root`` is no checkout.
    """
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            check=True, capture_output=True).stdout.split(b"\0")
    total = 0
    for name in filter(None, listed):
        path = root / name.decode()
        if path.is_file() and not path.is_symlink() and not any(p in path.parents for p in leave_out):
            total += path.stat().st_size
    return total


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _number(kind: type, what: str, ok):
    """An argparse ``type`` that converts with ``kind`` and refuses what ``ok`` does not accept."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text}") from None
        if not ((kind is not float or math.isfinite(value)) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {what}, not {text}")
        return value
    return convert


positive_mib = _number(float, "a positive number of MiB", lambda v: v > 0)
non_negative_mib = _number(float, "a non-negative number of MiB", lambda v: v >= 0)
shard_number = _number(int, "a shard number (0 or more)", lambda v: v >= 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=shard_number, nargs="+", default=[1],
                        help="training shards to draw from (default: 1; each counts once)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder (default: ../shared/data beside the checkout, wherever this runs from)")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "gpu",
                        help="where to put it, under the checkout's data/ (replaced)")
    parser.add_argument("--budget-mib", type=positive_mib, default=64.0, help="the device tool's limit (default 64)")
    parser.add_argument("--spare-mib", type=non_negative_mib, default=0.5, help="room to leave unused (default 0.5)")
    parser.add_argument("--without", type=Path, nargs="*", default=[],
                        help="checkout folders to leave out of the count (moved away for the run), "
                             "relative to the checkout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.shards = list(dict.fromkeys(args.shards))  # a shard named twice is still copied (and counted) once

    out = args.out.resolve()
    if (ROOT / "data").resolve() not in out.parents:
        print(f"prepare_gpu_data: --out must lie under {ROOT / 'data'} (it is replaced), not {args.out}", file=sys.stderr)
        return 2
    shards = [args.data / "train" / f"shard-{s}" for s in args.shards] + [args.data / "train" / VAL_SHARD]
    missing = [str(folder) for folder in shards if not folder.is_dir()]
    if missing:
        print(f"prepare_gpu_data: no such shard: {', '.join(missing)}", file=sys.stderr)
        return 2
    val_source = photos(args.data / "train" / VAL_SHARD)[-VAL_FILES:]
    sources = [p for folder in shards[:-1] for p in photos(folder) if p not in val_source]
    if len(val_source) < VAL_FILES or not sources:
        print(f"prepare_gpu_data: {VAL_SHARD} needs {VAL_FILES} held-out photos and the shards some more",
              file=sys.stderr)
        return 2
    away = [(ROOT / p).resolve() for p in args.without]
    for folder in away:
        if not folder.is_dir() or ROOT not in folder.parents:
            print(f"prepare_gpu_data: {folder} is not a folder of the checkout", file=sys.stderr)
            return 2
    try:
        fixed = travelling_bytes(ROOT, [out, *away])
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"prepare_gpu_data: needs git and the git checkout ({exc})", file=sys.stderr)
        return 2
    held_out = sum(p.stat().st_size for p in val_source)
    room = int((args.budget_mib - args.spare_mib) * MIB) - fixed - held_out
    if room <= 0:
        print(f"prepare_gpu_data: the checkout and the held-out files take {(fixed + held_out) / MIB:.1f} MiB of the "
              f"{args.budget_mib:g} MiB budget ({args.spare_mib:g} MiB kept spare); no room for data", file=sys.stderr)
        return 1

    if out.exists():
        shutil.rmtree(out)
    (out / "val").mkdir(parents=True)
    (out / "train").mkdir()
    for path in val_source:
        shutil.copy2(path, out / "val" / path.name)
    random.Random(args.seed).shuffle(sources)
    taken, used = 0, 0
    for path in sources:
        size = path.stat().st_size
        if used + size <= room:
            shutil.copy2(path, out / "train" / f"{path.parent.name}-{path.name}")
            taken, used = taken + 1, used + size
    total = fixed + used + sum(p.stat().st_size for p in val_source)
    print(f"{out}: {taken} of {len(sources)} training photos (shards {', '.join(map(str, args.shards))}, "
          f"{used / MIB:.1f} MiB) and {VAL_FILES} held out; with the checkout's {fixed / MIB:.1f} MiB, "
          f"{total / MIB:.1f} of {args.budget_mib:g} MiB travel")
    for folder in away:
        kept = Path("/tmp") / f"nicodec-away-{folder.name}"
        if kept.exists():  # mv would put the folder inside it
            print(f"{kept} exists: move it aside first, or the folder would land inside it")
        print(f"before the run: mv -T {folder} {kept}\nafter it:       mv -T {kept} {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
