"""nicodec.rans on a Kodak-size latent: speed each way and size against the ideal, beside constriction.

    python benchmarks/bench_rans.py [--repeats 7] [--lanes N] [--json benchmarks/results/rans.json]

The latent has 48 x 32 x 192 symbols (a 768x512 image at 1/16 resolution with
192 channels). Each symbol draws a scale log-uniformly from [0.11, 8], is coded
with the table of the smallest of 64 log-spaced scales (0.11 to 64, as in
CompressAI's scale table) that is at least as large, and its value is sampled
from that table's distribution. Sizes are compared with the information
content under the quantized integer frequencies and under the float pmfs.

The coders are timed interleaved, run by run, and the JSON has nicodec's time and size as
ratios to each (``nicodec_over``). constriction (optional) codes the same symbols with an ``AnsCoder``: grouped by
table, each group with one ``Categorical`` model built once from the float pmf
(the fastest of its APIs when symbols use different tables), and, for
reference, with ``QuantizedGaussian`` and per-symbol scales.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

from nicodec import rans

from common import write_report

SHAPE = (192, 32, 48)
TAIL_MASS = 1e-9
MAX_HALF_WIDTH = 127


def scale_table(levels: int = 64, lo: float = 0.11, hi: float = 64.0) -> np.ndarray:
    return np.exp(np.linspace(math.log(lo), math.log(hi), levels))


def gaussian_pmfs(scales: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Float pmfs of round(N(0, s**2)) over +-TAIL_MASS quantiles, escape mass last (as export does)."""
    phi = np.vectorize(lambda t: 0.5 * math.erfc(-t / math.sqrt(2)))
    z = -math.sqrt(2) * _erfcinv(TAIL_MASS)  # normal quantile of TAIL_MASS / 2
    pmfs, offsets = [], []
    for s in scales:
        half = min(max(1, math.ceil(-z * s)), MAX_HALF_WIDTH)
        v = np.abs(np.arange(-half, half + 1, dtype=np.float64))
        pmf = phi((0.5 - v) / s) - phi((-0.5 - v) / s)
        pmfs.append(np.append(pmf, max(0.0, 1.0 - math.fsum(pmf))))
        offsets.append(-half)
    return pmfs, np.array(offsets, dtype=np.int32)


def _erfcinv(y: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erfc(mid) > y else (lo, mid)
    return lo


def make_latent(seed: int = 0):
    """(values, table_ids, tables, pmfs, sampled scales) of a seeded Kodak-size latent."""
    rng = np.random.default_rng(seed)
    table = scale_table()
    pmfs, offsets = gaussian_pmfs(table)
    tables = rans.tables_from_pmfs(pmfs, offsets)
    n = math.prod(SHAPE)
    scales = np.exp(rng.uniform(math.log(0.11), math.log(8.0), n))
    ids = np.searchsorted(table, scales * (1 - 1e-12)).astype(np.int32)
    values = np.empty(n, dtype=np.int32)
    for t in np.unique(ids):
        where = np.flatnonzero(ids == t)
        p = pmfs[t] / math.fsum(pmfs[t])
        index = rng.choice(len(p), size=len(where), p=p)
        # The escape index stands for a value just outside the table.
        values[where] = np.where(index == len(p) - 1, offsets[t] - 1, offsets[t] + index)
    return values, ids, tables, pmfs, scales


def ideal_bits(values, ids, tables, pmfs) -> tuple[float, float]:
    """Information in bits under the integer frequencies and under the float pmfs (+32 bits per escape)."""
    sizes, offsets = tables.sizes[ids].astype(np.int64), tables.offsets[ids].astype(np.int64)
    index = values - offsets
    escaped = (index < 0) | (index > sizes - 2)
    index = np.where(escaped, sizes - 1, index)
    cdf = tables.cdf.astype(np.int64)
    freq = cdf[ids, index + 1] - cdf[ids, index]
    width = max(len(p) for p in pmfs)
    probs = np.zeros((len(pmfs), width))
    for t, p in enumerate(pmfs):
        probs[t, : len(p)] = p / math.fsum(p)
    extra = 32.0 * np.count_nonzero(escaped)
    quantized = float(np.sum(rans.PRECISION - np.log2(freq))) + extra
    return quantized, float(-np.sum(np.log2(probs[ids, index]))) + extra


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def interleaved(coders: dict, repeats: int) -> dict:
    """Time each coder's encode and decode ``repeats`` times after a warm-up, the coders taking
    turns run by run (so a change in the machine's load falls on all of them alike); checks
    each round trip. ``coders``: name -> (encode() -> stream, decode(stream) -> values,
    size(stream) -> bytes, the values expected).

    Returns:
        name -> (bytes, encode seconds per run, decode seconds per run).
    """
    streams = {name: encode() for name, (encode, _, _, _) in coders.items()}  # warm-up
    for name, (_, decode, _, expected) in coders.items():
        assert np.array_equal(decode(streams[name]), expected), f"{name} round trip failed"
    times = {name: ([], []) for name in coders}
    for _ in range(repeats):
        for name, (encode, _, _, _) in coders.items():
            t0 = time.perf_counter()
            streams[name] = encode()
            times[name][0].append(time.perf_counter() - t0)
        for name, (_, decode, _, _) in coders.items():
            t0 = time.perf_counter()
            decode(streams[name])
            times[name][1].append(time.perf_counter() - t0)
    return {name: (coders[name][2](streams[name]), *times[name]) for name in coders}


def nicodec_coder(values, ids, tables, lanes):
    return (lambda: rans.encode(values, ids, tables, lanes), lambda data: rans.decode(data, ids, tables), len, values)


def bench_nicodec(values, ids, tables, repeats, lanes):
    return interleaved({"nicodec.rans": nicodec_coder(values, ids, tables, lanes)}, repeats)["nicodec.rans"]


def group_by_table(ids, n_tables):
    """Symbol positions sorted by table (a radix sort on uint8 ids), and each table's bounds in them."""
    order = np.argsort(ids.astype(np.uint8), kind="stable")
    return order, np.searchsorted(ids[order], np.arange(n_tables + 1))


def constriction_categorical(values, ids, tables, pmfs):
    import constriction

    models = [constriction.stream.model.Categorical(p / math.fsum(p), perfect=False) for p in pmfs]
    sizes, offsets = tables.sizes.astype(np.int64), tables.offsets.astype(np.int64)

    def encode():
        index = values - offsets[ids]
        escaped = (index < 0) | (index > sizes[ids] - 2)
        index = np.where(escaped, sizes[ids] - 1, index).astype(np.int32)
        order, bounds = group_by_table(ids, len(pmfs))
        coder = constriction.stream.stack.AnsCoder()
        for t in range(len(pmfs) - 1, -1, -1):
            if bounds[t + 1] > bounds[t]:
                coder.encode_reverse(index[order[bounds[t] : bounds[t + 1]]], models[t])
        return coder.get_compressed(), values[escaped]

    def decode(compressed, escapes):
        order, bounds = group_by_table(ids, len(pmfs))
        coder = constriction.stream.stack.AnsCoder(compressed)
        index = np.empty(len(ids), dtype=np.int64)
        for t in range(len(pmfs)):
            lo, hi = bounds[t], bounds[t + 1]
            if hi > lo:
                index[order[lo:hi]] = coder.decode(models[t], int(hi - lo))
        out = offsets[ids] + index
        out[index == sizes[ids] - 1] = escapes
        return out

    return (encode, lambda stream: decode(*stream), lambda stream: 4 * len(stream[0]) + 4 * len(stream[1]), values)


def constriction_gaussian(values, ids):
    import constriction

    family = constriction.stream.model.QuantizedGaussian(-256, 256)
    stds = scale_table()[ids]
    means = np.zeros(len(ids))
    symbols = values.astype(np.int32)

    def encode():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols, family, means, stds)
        return coder.get_compressed()

    def decode(compressed):
        return constriction.stream.stack.AnsCoder(compressed).decode(family, means, stds)

    return encode, decode, lambda compressed: 4 * len(compressed), symbols


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs after a warm-up, at least 5")
    parser.add_argument("--lanes", type=int, default=None, help="lanes for nicodec.rans (default: its choice)")
    parser.add_argument("--sweep", action="store_true", help="also time nicodec.rans at 8 to 512 lanes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")

    values, ids, tables, pmfs, _ = make_latent(args.seed)
    ideal_q, ideal_f = ideal_bits(values, ids, tables, pmfs)
    lanes = args.lanes or rans.default_lanes(len(values))
    coders = {"nicodec.rans": nicodec_coder(values, ids, tables, args.lanes)}
    constriction_version = None
    try:
        import constriction

        constriction_version = getattr(constriction, "__version__", None) or _version("constriction")
        coders["constriction Categorical"] = constriction_categorical(values, ids, tables, pmfs)
        coders["constriction QuantizedGaussian"] = constriction_gaussian(values, ids)
    except ImportError:
        print("constriction is not installed: skipping it")
    rows = interleaved(coders, args.repeats)

    print(f"{len(values):,} symbols, {tables.n_tables} tables, nicodec lanes {lanes}")
    print(f"ideal: {ideal_q / 8:,.0f} bytes (quantized frequencies), {ideal_f / 8:,.0f} bytes (float pmfs)")
    head = f"{'coder':32} {'encode ms':>10} {'decode ms':>10} {'bytes':>9} {'vs ideal q':>11} {'vs ideal f':>11}"
    print(head)
    print("-" * len(head))
    results = {}
    for name, (size, enc, dec) in rows.items():
        r = {
            "bytes": size,
            "encode_ms": 1e3 * statistics.median(enc),
            "decode_ms": 1e3 * statistics.median(dec),
            "encode_runs_ms": [1e3 * t for t in enc],
            "decode_runs_ms": [1e3 * t for t in dec],
            "overhead_vs_quantized_pct": 100 * (8 * size / ideal_q - 1),
            "overhead_vs_float_pct": 100 * (8 * size / ideal_f - 1),
        }
        results[name] = r
        print(
            f"{name:32} {r['encode_ms']:10.1f} {r['decode_ms']:10.1f} {size:9,d}"
            f" {r['overhead_vs_quantized_pct']:+10.3f}% {r['overhead_vs_float_pct']:+10.3f}%"
        )
    base = results["nicodec.rans"]
    ratios = {}
    for name, r in results.items():
        if name != "nicodec.rans":
            ratios[name] = {"encode": base["encode_ms"] / r["encode_ms"], "decode": base["decode_ms"] / r["decode_ms"],
                            "bytes": base["bytes"] / r["bytes"]}
            print(f"nicodec / {name}: encode x{ratios[name]['encode']:.2f}, decode x{ratios[name]['decode']:.2f}, "
                  f"size x{ratios[name]['bytes']:.4f}")
    met = max(base["encode_ms"], base["decode_ms"]) <= 60 and base["overhead_vs_quantized_pct"] <= 1
    print(f"targets (<= 60 ms each way, <= 1% over the quantized ideal): {'met' if met else 'MISSED'}")

    sweep = {}
    if args.sweep:
        print(f"\n{'lanes':>6} {'encode ms':>10} {'decode ms':>10} {'bytes':>9} {'vs ideal q':>11}")
        for k in (8, 16, 32, 64, 128, 256, 512):
            size, enc, dec = bench_nicodec(values, ids, tables, args.repeats, k)
            sweep[k] = {
                "bytes": size,
                "encode_ms": 1e3 * statistics.median(enc),
                "decode_ms": 1e3 * statistics.median(dec),
                "overhead_vs_quantized_pct": 100 * (8 * size / ideal_q - 1),
            }
            r = sweep[k]
            print(
                f"{k:6d} {r['encode_ms']:10.1f} {r['decode_ms']:10.1f} {size:9,d}"
                f" {r['overhead_vs_quantized_pct']:+10.3f}%"
            )

    if args.json:
        report = {
            "load_average": os.getloadavg(),
            "symbols": len(values),
            "tables": tables.n_tables,
            "lanes": lanes,
            "seed": args.seed,
            "repeats": args.repeats,
            "ideal_bytes_quantized": ideal_q / 8,
            "ideal_bytes_float": ideal_f / 8,
            "constriction": constriction_version,
            "coders": results,
            "nicodec_over": ratios,
            "timing": "interleaved: each run times every coder in turn",
            "lanes_sweep": sweep,
        }
        write_report(args.json, report)


if __name__ == "__main__":
    main()
