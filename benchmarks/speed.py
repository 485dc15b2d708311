"""Speed per image: nicodec, Pillow's codecs and CompressAI's torch model, measured side by side in one run.

    python benchmarks/speed.py [--images ../shared/data/kodak] [--repeats 3] [--threads 1 2] [--quality Q]
                               [--json PATH] [--markdown PATH]
    python benchmarks/speed.py --quick      # two images, one run each: keeps the harness working

The default run (24 images, 3 runs, 1 and 2 threads, CompressAI beside) took 6.3 minutes on 2 cores.

Every codec encodes a uint8 RGB array to bytes and decodes the bytes back to one,
so the times include the same conversions for all. Each configuration first codes
the first image once (warm-up: sessions, caches, lazy initialisation), then codes
every image ``--repeats`` times; an image's time is the median of its runs, and the
table gives the median over the images (the mean is in the JSON).

- nicodec: the CPU provider with each of ``--threads`` intra-op threads, and CUDA
  when the installed onnxruntime has it, at ``--quality`` (default: the model's
  default quality; a single-rate model takes none). The quality used is in the JSON
  (``nicodec_quality``, and on each nicodec row); the rate, and so the entropy
  coding's share of the time, grows with it.
- Pillow's JPEG (4:4:4 and 4:2:0), WebP, AVIF and JPEG XL at quality 75 (the options
  of ``rd.py``; libavif uses all cores by default, the others one).
- CompressAI (when importable): ``mbt2018_mean(quality=3)``, the mean-scale hyperprior
  of Minnen et al. 2018 (N=128, M=192: the size of the shipped model),
  and the same class at the size of the earlier single-rate models (N=64, M=128),
  with random weights, ``compress``/``decompress`` under ``torch.no_grad`` with
  ``torch.set_num_threads`` set to each thread count. Random weights time the same
  transforms; the entropy coding of a trained model codes different symbols, so the
  coding part of its time is indicative only.

Ratios divide each median time by nicodec's on the CPU with the same thread count
(for Pillow's codecs, which take no thread setting, the largest ``--threads``): above
1 means slower than nicodec. The split of nicodec's time replays ``Codec.encode`` and
``Codec.decode`` stage by stage (analysis graph, entropy-parameter graph, rANS coding,
synthesis graph, and the rest: reading, padding, packing) and checks that it made the
codec's own bytes and pixels.

nicodec on the CPU and CompressAI's models are timed interleaved, one thread count at
a time: for each image and run, nicodec encodes and decodes, then each CompressAI
model, and the next run goes the other way round (A B C, C B A, ...). All of them see
the same load, and a load that drifts cancels. Timed minutes apart, any change in the
machine's load went straight into the ratio, and torch suffers more from contention
than onnxruntime: at a load average of 7 to 8 on 2 cores, timing in blocks gave 3.2
to encode and 1.9 to decode where interleaving gave 3.6 and 4.0. Each CompressAI row
also has paired ratios (``paired_encode_ratio``, ``paired_decode_ratio``): per image,
the median over the runs of its time over nicodec's in the same run (under
``per_image``), and over the images their median, 10th and 90th percentiles, minimum
and maximum. The split of nicodec's time and Pillow's codecs are timed before, each
in its own block. What other processes took of the machine's CPU time while the
timing ran (Linux: the busy time in /proc/stat less this process's own) is in the
JSON (``other_processes_cpu_share``) and the table; above 10% a warning says that the
times and ratios are unreliable. The 1-minute load averages before and after are
recorded too, but not judged: this program's own threads count in them.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image

from nicodec import QualityError

from common import add_quality_argument, coding_quality, image_paths, load_average, publish
from common import THREADS, open_codec, read_rgb, whole_number
from rd import QUALITIES, SHARED, available, save_options

CLASSIC_QUALITY = 75


class Coder(NamedTuple):
    """One configuration to time: ``encode(image) -> bytes``, ``decode(bytes) -> array``, and what its row records."""

    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]
    info: dict


def timed_ms(run) -> tuple[float, object]:
    """The wall time of one call of ``run`` in milliseconds, and its result."""
    start = time.perf_counter()
    result = run()
    return 1000 * (time.perf_counter() - start), result


def measure(coders: list[Coder], images: list[np.ndarray], repeats: int) -> list[dict]:
    """Time every coder on every image, interleaved, after one warm-up each; one row per coder.

    For each image and repetition, each coder encodes the image and decodes its bytes in
    turn, in the list's order and then in reverse (ABC, CBA, ...), so that all of them see
    the same load and a drift in it cancels. With more than one coder, each row also holds
    the paired ratios to the first coder: per image, the median over the repetitions of
    its time over the first coder's in the same repetition.
    """
    for coder in coders:
        coder.decode(coder.encode(images[0]))
    runs = [[[] for _ in images] for _ in coders]  # runs[coder][image]: (encode ms, decode ms) per repetition
    bpp = [[] for _ in coders]
    for i, image in enumerate(images):
        for r in range(repeats):
            order = list(enumerate(coders))
            for k, coder in order if (i * repeats + r) % 2 == 0 else order[::-1]:
                enc_ms, data = timed_ms(lambda: coder.encode(image))
                dec_ms, out = timed_ms(lambda: coder.decode(data))
                if out.shape != image.shape:
                    raise RuntimeError(f"{coder.name} decoded a {out.shape} array from a {image.shape} image")
                runs[k][i].append((enc_ms, dec_ms))
                if r == 0:
                    bpp[k].append(8 * len(data) / (image.shape[0] * image.shape[1]))
    rows = []
    for k, coder in enumerate(coders):
        enc = [statistics.median(e for e, _ in per_run) for per_run in runs[k]]
        dec = [statistics.median(d for _, d in per_run) for per_run in runs[k]]
        row = {
            "name": coder.name, **coder.info,
            "encode_ms": statistics.median(enc), "decode_ms": statistics.median(dec),
            "encode_ms_mean": statistics.mean(enc), "decode_ms_mean": statistics.mean(dec),
            "bpp": statistics.mean(bpp[k]),
            "per_image": {"encode_ms": enc, "decode_ms": dec},
        }
        line = (f"{coder.name:>28} {str(coder.info.get('threads', '-')):>7}: encode {row['encode_ms']:8.1f} ms, "
                f"decode {row['decode_ms']:8.1f} ms, {row['bpp']:.3f} bpp")
        if len(coders) > 1:
            row["paired_against"] = coders[0].name
            for side, j in (("encode", 0), ("decode", 1)):
                ratios = [statistics.median(mine[j] / base[j] for mine, base in zip(runs[k][i], runs[0][i]))
                          for i in range(len(images))]
                row["per_image"][f"{side}_ratio"] = ratios
                row[f"paired_{side}_ratio"] = spread(ratios)
            line += (f", paired ratio encode {_spread_words(row['paired_encode_ratio'])}, "
                     f"decode {_spread_words(row['paired_decode_ratio'])}")
        print(line, flush=True)
        rows.append(row)
    return rows


def spread(values: list[float]) -> dict:
    """The median of ``values``, their 10th and 90th percentiles (linear interpolation), min and max."""
    p10, p90 = np.percentile(values, [10, 90])
    return {"median": statistics.median(values), "p10": float(p10), "p90": float(p90),
            "min": min(values), "max": max(values)}


# -- nicodec ------------------------------------------------------------------------------


def nicodec_rows(images, repeats: int, threads: list[int], model: Path | None, quality: float | None,
                 compressai: dict | None = None) -> list[dict]:
    """Time nicodec at ``quality`` (checked: see ``coding_quality``) on the CPU with each thread count, and CUDA.

    Args:
        compressai: CompressAI models by name (see ``compressai_models``), timed with
            ``torch.set_num_threads`` at each thread count, interleaved with nicodec on
            the CPU with as many threads (see ``measure``); their rows follow nicodec's.
    """
    import onnxruntime

    from nicodec import Codec

    configs = [("cpu", t) for t in threads]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        configs.append(("cuda", None))
    nicodec, others = [], []
    for provider, t in configs:
        codec = Codec(model, providers=provider, threads=t)
        used = coding_quality(codec, quality)
        setting = codec.model_id if used is None else f"{codec.model_id} q{used:g}"
        coders = [Coder("nicodec", lambda image, codec=codec: codec.encode(image, quality=quality),
                        lambda data, codec=codec: codec.decode(data, as_array=True),
                        {"provider": provider, "threads": t, "quality": used, "setting": setting})]
        if compressai and provider == "cpu":
            import torch

            torch.set_num_threads(t)
            coders += [Coder(name, *torch_coder(m), {"provider": "torch", "threads": t, "setting":
                             f"{type(m).__name__}(N={m.N}, M={m.M}), random weights"}) for name, m in compressai.items()]
            print(f"timing {', '.join(c.name for c in coders)} interleaved, {t} threads", flush=True)
        rows = measure(coders, images, repeats)
        nicodec.append(rows[0])
        others += rows[1:]
    order = list(compressai or {})
    return nicodec + sorted(others, key=lambda row: order.index(row["name"]))


def nicodec_stages(images, repeats: int, threads: int, model: Path | None, quality: float | None) -> dict:
    """Median ms per image of each stage of nicodec's encode and decode on the CPU, at ``quality``."""
    from nicodec import Codec
    from nicodec import format as nicformat

    codec = Codec(model, providers="cpu", threads=threads)
    split_decode(codec, codec.encode(images[0], quality=quality))
    per_stage: dict[str, dict[str, list[float]]] = {"encode": {}, "decode": {}}
    matches = True
    for image in images:
        reference = codec.encode(image, quality=quality)
        encodes = [split_encode(codec, image, quality) for _ in range(repeats)]
        decodes = [split_decode(codec, reference) for _ in range(repeats)]
        for side, runs in (("encode", encodes), ("decode", decodes)):
            for stage in runs[0][0]:
                per_stage[side].setdefault(stage, []).append(statistics.median(r[0][stage] for r in runs))
        sections = nicformat.unpack(reference)[1]
        matches &= encodes[-1][1] == (sections[b"ZSYM"], sections[b"YSYM"])
        matches &= np.array_equal(decodes[-1][1], codec.decode(reference, as_array=True))
    result = {"threads": threads, "quality": coding_quality(codec, quality), "matches_codec": bool(matches)}
    for side, stages in per_stage.items():
        result[side] = {stage: statistics.median(ms) for stage, ms in stages.items()}
        result[side]["total"] = sum(result[side].values())
    if not matches:
        print("warning: the stage-by-stage replay no longer makes the codec's bytes and pixels: "
              "bring speed.py's split_encode/split_decode in step with runtime/codec.py", file=sys.stderr)
    return result


def split_encode(codec, image: np.ndarray, quality: float | None = None) -> tuple[dict[str, float], tuple[bytes, bytes]]:
    """``Codec.encode`` stage by stage, as runtime/codec.py does it: ms per stage, and the two rANS streams.

    ``other`` is reading the input and padding it; the header and packing are left out (microseconds).
    """
    from nicodec import rans
    from nicodec.quantize import rdo_round, round_symbols
    from nicodec.images import read_picture

    marks = [time.perf_counter()]
    pixels = read_picture(image).rgb
    d = codec.model.downsampling
    padded = codec._pad(pixels)
    marks.append(time.perf_counter())
    _, gain = codec._encoder_gain(quality)
    fixed = {} if gain is None else {"gain": gain.reshape(1, -1, 1, 1)}
    encoder = codec._session("encoder")
    y, z = codec._run_tiled(encoder, "image", padded.transpose(2, 0, 1)[None], d, (4, 1), codec.margin, fixed)
    marks.append(time.perf_counter())
    z_hat = round_symbols(z)
    scale_index, mean_q = codec._entropy_parameters(z_hat, y.shape[2:])
    marks.append(time.perf_counter())
    symbols = rdo_round(y - codec._means(mean_q), scale_index, codec.model.y_tables, slope=codec.rdo_slope)
    streams = (
        rans.encode(z_hat.ravel(), codec._z_table_ids(z_hat.shape), codec.model.z_tables),
        rans.encode(symbols.ravel(), scale_index.ravel(), codec.model.y_tables),
    )
    marks.append(time.perf_counter())
    stages = ("other", "analysis", "entropy_parameters", "entropy_coding")
    return {s: 1000 * (b - a) for s, a, b in zip(stages, marks, marks[1:])}, streams


def split_decode(codec, data: bytes) -> tuple[dict[str, float], np.ndarray]:
    """``Codec.decode`` stage by stage: ms per stage, and the pixels. ``other`` is parsing the file."""
    from nicodec import format as nicformat
    from nicodec import rans

    marks = [time.perf_counter()]
    header, sections = nicformat.unpack(data)
    marks.append(time.perf_counter())
    z_shape = codec._z_shape(header.height, header.width)
    z_hat = rans.decode(sections[b"ZSYM"], codec._z_table_ids(z_shape), codec.model.z_tables).reshape(z_shape)
    marks.append(time.perf_counter())
    multiple = nicformat.padding(header.flags, codec.model.downsampling)
    scale_index, mean_q = codec._entropy_parameters(z_hat, codec._y_shape(header.height, header.width, multiple))
    marks.append(time.perf_counter())
    symbols = rans.decode(sections[b"YSYM"], scale_index.ravel(), codec.model.y_tables).reshape(mean_q.shape)
    y_hat = codec._y_hat(header, symbols, mean_q)
    marks.append(time.perf_counter())
    image = codec._synthesize(y_hat, header.quality)
    pixels = np.ascontiguousarray(image[0, :, : header.height, : header.width].transpose(1, 2, 0))
    marks.append(time.perf_counter())
    stages = ("other", "entropy_decoding_z", "entropy_parameters", "entropy_decoding_y", "synthesis")
    ms = {s: 1000 * (b - a) for s, a, b in zip(stages, marks, marks[1:])}
    return {"entropy_coding": ms.pop("entropy_decoding_z") + ms.pop("entropy_decoding_y"), **ms}, pixels


# -- Pillow -------------------------------------------------------------------------------


def classic_rows(images, repeats: int) -> tuple[list[dict], list[str]]:
    rows, skipped = [], []
    for codec in QUALITIES:
        if not available(codec):
            skipped.append(codec)
            continue
        fmt, options = save_options(codec, CLASSIC_QUALITY)

        def encode(image, fmt=fmt, options=options) -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format=fmt, **options)
            return buffer.getvalue()

        def decode(data: bytes) -> np.ndarray:
            return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

        rows += measure([Coder(codec, encode, decode, {"setting": f"quality {CLASSIC_QUALITY}"})], images, repeats)
    return rows, skipped


# -- CompressAI ---------------------------------------------------------------------------


def import_compressai() -> tuple[object | None, str]:
    """CompressAI's package, or None and why not; the string also notes any stand-in used.

    CompressAI imports ``torchvision.transforms`` only to list transform names in its
    registry. Where torchvision cannot be imported (PyPI's torchvision needs the CUDA
    build of torch), an empty stand-in module takes its place: the models never use it.
    """
    note = ""
    try:
        importlib.import_module("torchvision.transforms")
    except Exception as exc:  # a torchvision built for another torch raises RuntimeError, not ImportError
        stand_in = types.ModuleType("torchvision")
        stand_in.transforms = types.ModuleType("torchvision.transforms")
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"], sys.modules["torchvision.transforms"] = stand_in, stand_in.transforms
        note = f"torchvision replaced by an empty stand-in (its import failed: {type(exc).__name__}: {exc})"
    try:
        import compressai
    except Exception as exc:
        return None, f"CompressAI is not importable ({type(exc).__name__}: {exc})"
    return compressai, note


def compressai_models() -> tuple[dict, str | None, str]:
    """CompressAI's two mean-scale hyperpriors by name, with random weights and their tables built.

    Returns:
        The models (none when CompressAI is not importable), the reason it was skipped
        (or None), and a note of the versions and any stand-in used.
    """
    compressai, note = import_compressai()
    if compressai is None:
        return {}, note, ""
    import torch
    from compressai.models import MeanScaleHyperprior
    from compressai.zoo import mbt2018_mean

    torch.manual_seed(0)
    models = {
        "compressai mbt2018-mean q3": mbt2018_mean(quality=3, pretrained=False),
        "compressai msh N64 M128": MeanScaleHyperprior(N=64, M=128),
    }
    for model in models.values():
        model.eval()
        model.update(force=True)
    return models, None, f"CompressAI {compressai.__version__}, torch {torch.__version__}. {note}".strip()


def torch_coder(model):
    import torch

    def encode(image: np.ndarray) -> bytes:
        height, width = image.shape[:2]
        x = torch.from_numpy(np.pad(image, ((0, -height % 64), (0, -width % 64), (0, 0)), mode="edge"))
        with torch.no_grad():
            out = model.compress(x.permute(2, 0, 1)[None].float().div_(255))
        # One byte string: the image size and the two streams' lengths, then the streams.
        y_string, z_string = out["strings"][0][0], out["strings"][1][0]
        header = np.array([height, width, *out["shape"], len(y_string)], dtype="<u4").tobytes()
        return header + y_string + z_string

    def decode(data: bytes) -> np.ndarray:
        height, width, h, w, split = np.frombuffer(data[:20], dtype="<u4").tolist()
        with torch.no_grad():
            x_hat = model.decompress([[data[20 : 20 + split]], [data[20 + split :]]], [h, w])["x_hat"]
        pixels = x_hat[0, :, :height, :width].clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        return pixels.permute(1, 2, 0).contiguous().numpy()

    return encode, decode


# -- report -------------------------------------------------------------------------------


def add_ratios(rows: list[dict], baseline_threads: int) -> None:
    """``encode_ratio``/``decode_ratio``: a row's median time over nicodec CPU's at the same threads."""
    nicodec = {r["threads"]: r for r in rows if r["name"] == "nicodec" and r["provider"] == "cpu"}
    for row in rows:
        base = nicodec.get(row.get("threads")) or nicodec[baseline_threads]
        row["ratio_against"] = f"nicodec cpu {base['threads']} threads"
        row["encode_ratio"] = row["encode_ms"] / base["encode_ms"]
        row["decode_ratio"] = row["decode_ms"] / base["decode_ms"]


def markdown(result: dict) -> str:
    lines = [
        f"Speed on {len(result['images'])} images, median ms per image ({result['repeats']} runs each after a "
        f"warm-up; nicodec at {_quality_words(result.get('nicodec_quality'))}, Pillow's codecs at quality "
        f"{result['classic_quality']}); ratio = time / nicodec CPU's at the same thread count (Pillow: against nicodec at "
        f"{result['baseline_threads']} threads), above 1 is slower than nicodec. CompressAI was timed "
        "interleaved with nicodec image by image; its paired ratio is the median over the images of the time over "
        "nicodec's on the same image and run (10th-90th percentile in brackets)",
        "",
        "| codec | setting | provider, threads | encode ms | decode ms | encode ratio | decode ratio "
        "| paired encode ratio | paired decode ratio | bpp |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        where = f"{r.get('provider', 'Pillow')}, {r.get('threads') or 'default'}"
        paired = [_spread_words(r[k]) if k in r else "-" for k in ("paired_encode_ratio", "paired_decode_ratio")]
        lines.append(f"| {r['name']} | {r['setting']} | {where} | {r['encode_ms']:.1f} | {r['decode_ms']:.1f} "
                     f"| {r['encode_ratio']:.2f} | {r['decode_ratio']:.2f} | {' | '.join(paired)} | {r['bpp']:.3f} |")
    load, others = result.get("load_average_1min"), result.get("other_processes_cpu_share")
    if others is not None:
        lines += ["", f"Other processes took {100 * others:.1f}% of the machine's CPU time while the timing ran "
                      "(/proc/stat's busy time less this process's own)."]
    if load:
        lines += ["", f"Load average (1 minute) before the timing {load['before']}, after it {load['after']}, "
                      f"on {load['cpus']} cores (this program's own threads count in it)."]
    if result.get("load_warning"):
        lines += ["", f"**Warning: {result['load_warning']}.**"]
    stages = result["nicodec_stages"]
    lines += [
        "",
        f"nicodec's time by stage (CPU, {stages['threads']} threads, {_quality_words(stages.get('quality'))}, "
        "median ms per image; "
        f"replay matches the codec: {stages['matches_codec']})",
        "",
        "| direction | " + " | ".join(STAGE_ORDER) + " | total |",
        "|---|" + "---|" * (len(STAGE_ORDER) + 1),
    ]
    for side in ("encode", "decode"):
        cells = [f"{stages[side][s]:.1f}" if s in stages[side] else "-" for s in STAGE_ORDER]
        lines.append(f"| {side} | " + " | ".join(cells) + f" | {stages[side]['total']:.1f} |")
    for name, reason in result["skipped"].items():
        lines += ["", f"Skipped {name}: {reason}"]
    if result["compressai_note"]:
        lines += ["", result["compressai_note"]]
    return "\n".join(lines)


STAGE_ORDER = ("analysis", "entropy_parameters", "entropy_coding", "synthesis", "other")


def one_minute_load() -> float | None:
    averages = load_average()
    return averages[0] if averages else None


OTHERS_LIMIT = 0.10
"""The share of the machine's CPU time other processes may take while timing runs before the
times are called unreliable."""


def cpu_seconds() -> dict | None:
    """The machine's busy CPU seconds (every process, from /proc/stat), this process's own
    (``os.times``) and a monotonic clock; None where /proc/stat is missing (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    own = os.times()
    return {"machine_busy": (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
            "own": own.user + own.system, "wall": time.monotonic()}


def others_share(start: dict | None, end: dict | None, cpus: int) -> float | None:
    """The share of the machine's CPU time (``cpus`` cores) that processes other than this one
    took between two :func:`cpu_seconds` readings (a hypervisor's steal counts as theirs)."""
    if not start or not end or end["wall"] <= start["wall"]:
        return None
    others = (end["machine_busy"] - start["machine_busy"]) - (end["own"] - start["own"])
    return round(max(0.0, others) / ((end["wall"] - start["wall"]) * cpus), 3)


def load_warning(share: float | None) -> str | None:
    """Why the times are unreliable when other processes took more than ``OTHERS_LIMIT`` of the
    CPU time while they were measured, else None (also when it could not be measured)."""
    if share is None or share <= OTHERS_LIMIT:
        return None
    return (f"other processes took {100 * share:.1f}% of the machine's CPU time while the timing ran: "
            "the times, and the ratios of CompressAI's torch against nicodec's onnxruntime most of all, "
            "are unreliable")


def _spread_words(spread: dict) -> str:
    return f"{spread['median']:.2f} ({spread['p10']:.2f}-{spread['p90']:.2f})"


def _quality_words(quality: float | None) -> str:
    return "its one rate (single-rate model)" if quality is None else f"quality {quality:g}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "kodak")
    parser.add_argument("--model", type=Path, default=None, help="nicodec model folder (default: the shipped one)")
    add_quality_argument(parser)
    parser.add_argument("--repeats", type=whole_number(1), default=3, help="timed runs per image, after one warm-up")
    parser.add_argument("--threads", type=THREADS, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=whole_number(0), default=0, help="use only the first N images")
    parser.add_argument("--no-compressai", action="store_true", help="leave CompressAI out")
    parser.add_argument("--quick", action="store_true", help="two images, one run each")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.limit, args.repeats = 2, 1

    open_codec(parser, args.model)  # a --model that is no model: one line, before any image is read
    paths = image_paths(args.images, args.limit)
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    images = [read_rgb(p) for p in paths]
    load, start = {"before": one_minute_load()}, cpu_seconds()
    try:
        stages = nicodec_stages(images, args.repeats, max(args.threads), args.model, args.quality)
    except QualityError as exc:  # raised by the warm-up, before any timing: out of range, or for a single-rate model
        parser.error(str(exc))
    classic, missing = classic_rows(images, args.repeats)
    skipped = {c: "not installed" for c in missing}
    models, note = {}, ""
    if args.no_compressai:
        skipped["compressai"] = "--no-compressai"
    else:
        models, reason, note = compressai_models()
        if reason:
            skipped["compressai"] = reason
    # Last, so that torch's thread pool is not yet started while Pillow's codecs run. With
    # nicodec and torch interleaved, torch's idle worker threads may spin for a moment after its
    # call and slow nicodec's next (nicodec's sessions stop spinning when a run returns:
    # nicodec.sessions._for_the_cpu); that cost is not cancelled.
    rows = nicodec_rows(images, args.repeats, args.threads, args.model, args.quality, models) + classic
    load["after"], load["cpus"] = one_minute_load(), os.cpu_count()
    others = others_share(start, cpu_seconds(), load["cpus"] or 1)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    add_ratios(rows, max(args.threads))
    result = {
        "images": [p.name for p in paths],
        "repeats": args.repeats,
        "threads": args.threads,
        "baseline_threads": max(args.threads),
        "nicodec_quality": stages["quality"],
        "classic_quality": CLASSIC_QUALITY,
        "rows": rows,
        "nicodec_stages": stages,
        "skipped": skipped,
        "compressai_note": note,
        "load_average_1min": load,
        "other_processes_cpu_share": others,
        "load_warning": load_warning(others),
    }
    if result["load_warning"]:
        print(f"warning: {result['load_warning']}", file=sys.stderr)
    table = markdown(result)
    publish(result, table, args.json, args.markdown)
    return result


if __name__ == "__main__":
    main()
