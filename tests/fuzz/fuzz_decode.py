#!/usr/bin/env python3
"""Fuzz target: any bytes into ``Codec.decode``; only a ``NicodecError`` may come out.

A decode must end with an image of the size and mode the header states, or with a
subclass of :class:`nicodec.NicodecError`. Any other exception is a finding:
atheris (libFuzzer) reports it and writes the input to ``crash-<sha1>``; hangs
and huge allocations are caught by libFuzzer's ``-timeout`` and ``-rss_limit_mb``.

Usage (from the repository root)::

    python tests/fuzz/fuzz_decode.py -atheris_runs=100000            # atheris, coverage-guided
    python tests/fuzz/fuzz_decode.py -atheris_runs=100000 corpus/    # keep the corpus it grows
    python tests/fuzz/fuzz_decode.py crash-0123abcd...               # replay one input
    python tests/fuzz/fuzz_decode.py --fallback -atheris_runs=100000 # no atheris: random mutation

Installing atheris: ``pip install atheris`` (wheels for CPython 3.8 to 3.11 on
x86-64 Linux) next to nicodec's runtime dependencies (numpy, pillow, typer,
onnxruntime). Without atheris, or with ``--fallback``, the same mutations run
from a plain random loop (no coverage feedback; new kinds of refusal are kept in
the pool) that honours ``-atheris_runs``/``-runs``, ``-seed``, ``-timeout`` and
``-rss_limit_mb`` and prints the same figures.

Seeds are real files made at start by encoding a few synthetic photos. The
mutator knows the container: besides libFuzzer's byte-level mutations it damages
one section or header field and rebuilds the file with a *valid* CRC (which the
fuzzer could otherwise almost never get past), sets sizes and rANS lane and
escape counts to extreme values, and splices real files. The decoding codec runs
on the CPU with one thread and ``max_pixels`` of 2**20 (``--max-pixels=N``), so
that a legitimately large image does not read as a memory finding.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter

import numpy as np
from PIL import Image

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["nicodec"]):
        import nicodec.codec
        import nicodec.format
        import nicodec.rans
        import nicodec.text
else:
    import nicodec.codec
    import nicodec.format
    import nicodec.rans

from nicodec import alpha as alpha_section
from nicodec import format as nicformat
from nicodec import rans
from nicodec import text as text_section
from nicodec.codec import Codec
from nicodec.errors import NicodecError

# -- the target -------------------------------------------------------------------------

CODEC: Codec | None = None
OUTCOMES: Counter = Counter()
EXECS = 0


def outcome_key(exc: BaseException | None) -> str:
    """A short label of an outcome: the error class and its message with the numbers taken out."""
    if exc is None:
        return "decoded"
    message = re.sub(r"b?'[^']*'|\(hash [0-9a-f]+\)", "Q", str(exc))
    message = re.sub(r"0x[0-9a-f]+|[0-9a-f]{8}\b|-?\d[\d,]*", "N", message)
    return f"{type(exc).__name__}: {message[:56]}"


def TestOneInput(data: bytes) -> str:
    """Decode ``data``; return its outcome label. Any exception other than a NicodecError escapes."""
    global EXECS
    EXECS += 1
    if EXECS % 20000 == 0:
        print_stats(sys.stderr)
    try:
        pixels = CODEC.decode(data, as_array=True)
    except NicodecError as exc:
        key = outcome_key(exc)
    else:
        header, sections = nicformat.unpack(data, max_pixels=CODEC.max_pixels)
        channels = len(nicformat.decoded_mode(header.flags, alpha_section.find(sections) is not None))
        shape = (header.height, header.width) + ((channels,) if channels > 1 else ())
        if pixels.dtype != np.uint8 or pixels.shape != shape:
            raise AssertionError(
                f"decoded a {pixels.dtype} image of shape {pixels.shape}; "
                f"the header says {header.width}x{header.height}"
            )
        key = "decoded"
    OUTCOMES[key] += 1
    return key


def print_stats(stream) -> None:
    print(f"#{EXECS} outcomes ({len(OUTCOMES)} kinds):", file=stream)
    for key, count in OUTCOMES.most_common():
        print(f"  {count:9d}  {key}", file=stream)
    stream.flush()


# -- seeds ------------------------------------------------------------------------------

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from photos import synthetic_photo  # noqa: E402 - tests/photos.py, numpy only

SEED_SIZES = [(64, 96), (1, 1), (50, 70), (130, 70), (8, 200), (64, 64), (3, 129)]
ALPHA_SEED_SIZES = [(96, 128), (5, 9)]  # an ALPL section and an ALPH one (nicodec.alpha)


def cut_out(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.clip((1.1 - np.hypot(y / h - 0.5, x / w - 0.5) / 0.4) * 2550, 0, 255).astype(np.uint8)


def make_seeds(codec: Codec) -> list[bytes]:
    seeds = [codec.encode(synthetic_photo(h, w, seed=i)) for i, (h, w) in enumerate(SEED_SIZES)]
    for data, (h, w) in zip(seeds, SEED_SIZES):
        assert codec.decode(data, as_array=True).shape == (h, w, 3)
    for tag, (h, w) in zip(alpha_section.TAGS[::-1], ALPHA_SEED_SIZES):
        data = codec.encode(np.dstack([synthetic_photo(h, w, seed=h), cut_out(h, w)]))
        assert alpha_section.find(nicformat.unpack(data)[1]) == tag, (tag, h, w)
        seeds.append(data)
    image = Image.fromarray(synthetic_photo(40, 56, seed=7))
    image.info["xmp"] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    image.text = {"Author": "Ren\u00e9e", "Comment": "\u4e2d" * 20, "parameters": "steps: 30\n" * 50}
    image.info["dpi"] = (300, 150)
    data = codec.encode(image)
    assert {text_section.TAG, b"PHYS"} <= set(nicformat.unpack(data)[1])
    seeds.append(data)  # XMP, TEXT and PHYS sections
    return seeds


# -- structure-aware mutation -----------------------------------------------------------

SEEDS: list[bytes] = []
INTERESTING_U32 = [0, 1, 2, 63, 64, 65, 127, 128, 255, 256, 4095, 4096, 65535, 65536, 1 << 20, (1 << 20) + 1,
                   2**31 - 1, 2**31, 2**32 - 1]
INTERESTING_U16 = [0, 1, 2, 7, 8, 9, 63, 64, 127, 128, 129, 255, 256, 4096, 32767, 32768, 65535]


def locate(data: bytes) -> tuple[nicformat.Header, list[tuple[bytes, int]], int] | None:
    """The header, section table and payload offset of data whose header parses (CRC not checked)."""
    try:
        return nicformat.read_header(data)
    except NicodecError:
        return None


def fix_crc(data: bytes) -> bytes:
    """Write the CRC an undamaged file would have, if the header is readable enough to find its place."""
    if len(data) < 8 or data[:4] != nicformat.MAGIC:
        return data
    id_len = data[6]
    if 28 + id_len > len(data):
        return data
    at = 28 + id_len + 8 * data[27 + id_len]
    if at + 4 > len(data):
        return data
    crc = zlib.crc32(data[at + 4 :], zlib.crc32(data[:at]))
    return data[:at] + struct.pack("<I", crc) + data[at + 4 :]


def sections_of(data: bytes) -> dict[bytes, bytes] | None:
    found = locate(data)
    if found is None:
        return None
    _, table, pos = found
    out = {}
    for tag, length in table:
        out[tag] = data[pos : pos + length]
        pos += length
    return out


def raw_mutate(data: bytes, rng: random.Random, max_size: int) -> bytes:
    """Byte-level mutations, for the loop without libFuzzer."""
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        kind = rng.randrange(8)
        pos = rng.randrange(len(out) + 1)
        if kind <= 2 and out:  # flip one bit
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif kind == 3 and out:  # set a byte
            out[pos % len(out)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif kind == 4:  # delete a range
            del out[pos : pos + rng.choice([1, 2, 4, rng.randrange(64)])]
        elif kind == 5:  # insert random or copied bytes
            if out and rng.random() < 0.5:
                src = rng.randrange(len(out))
                chunk = out[src : src + rng.randrange(1, 64)]
            else:
                chunk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 4, 8, 33])))
            out[pos:pos] = chunk
        elif kind == 6 and len(out) >= 4:  # an interesting u32 or u16
            if rng.random() < 0.5:
                value = rng.choice(INTERESTING_U32)
                at = rng.randrange(len(out) - 3)
                out[at : at + 4] = struct.pack("<I", value)
            else:
                at = rng.randrange(len(out) - 1)
                out[at : at + 2] = struct.pack("<H", rng.choice(INTERESTING_U16))
        elif kind == 7:  # truncate
            del out[pos:]
    return bytes(out[:max_size])


def structured_mutate(data: bytes, rng: random.Random, max_size: int, byte_mutate) -> bytes:
    """One container-aware change, the CRC recomputed; falls back to byte-level changes."""
    parts = sections_of(data)
    choice = rng.randrange(10)
    if parts is None or choice == 0:
        out = byte_mutate(data, rng, max_size)
        return fix_crc(out) if rng.random() < 0.7 else out
    header = locate(data)[0]
    if choice <= 4:  # damage one payload
        tag = rng.choice(list(parts))
        if tag == text_section.TAG and rng.random() < 0.5:  # inside the zlib stream, recompressed
            try:
                inner = zlib.decompress(parts[tag])
            except zlib.error:
                inner = parts[tag]
            parts[tag] = zlib.compress(byte_mutate(inner, rng, max_size))
        else:
            parts[tag] = byte_mutate(parts[tag], rng, max_size)
    elif choice == 5:  # extreme lane and escape counts in one stream
        tag = rng.choice(list(parts))
        payload = bytearray(parts[tag].ljust(rans.HEADER.size, b"\0"))
        k, e = rans.HEADER.unpack_from(payload)
        if rng.random() < 0.6:
            k = rng.choice(INTERESTING_U16 + [rng.randrange(65536)])
        if rng.random() < 0.6:
            e = rng.choice(INTERESTING_U32 + [rng.randrange(2**32)])
        rans.HEADER.pack_into(payload, 0, k, e)
        parts[tag] = bytes(payload)
    elif choice == 6:  # swap in a section of another real file
        tag = rng.choice(list(parts))
        donor = sections_of(rng.choice(SEEDS)) or {}
        if tag in donor:
            cut = rng.randrange(len(parts[tag]) + 1)
            parts[tag] = parts[tag][:cut] + donor[tag][cut:] if rng.random() < 0.5 else donor[tag]
    elif choice == 7:  # splice two files at the byte level
        donor = rng.choice(SEEDS)
        cut = rng.randrange(min(len(data), len(donor)) + 1)
        return fix_crc((data[:cut] + donor[cut:])[:max_size])
    # choice 8 and 9 (and the others): header fields, written raw so any value can appear
    try:
        out = bytearray(nicformat.pack(header, parts))
    except NicodecError:
        out = bytearray(data)
    if choice >= 8:
        id_len = out[6]
        field = rng.choice(["width", "height", "both", "quality", "length"])
        if field in ("width", "both"):
            struct.pack_into("<I", out, 15 + id_len, rng.choice(INTERESTING_U32 + [rng.randrange(1, 2048)]))
        if field in ("height", "both"):
            struct.pack_into("<I", out, 19 + id_len, rng.choice(INTERESTING_U32 + [rng.randrange(1, 2048)]))
        if field == "quality":
            struct.pack_into("<f", out, 23 + id_len, rng.choice([0.0, -0.0, 1e38, float("nan"), float("inf")]))
        if field == "length" and out[27 + id_len] > 0:
            entry = 28 + id_len + 8 * rng.randrange(out[27 + id_len]) + 4
            struct.pack_into("<I", out, entry, rng.choice(INTERESTING_U32))
    return fix_crc(bytes(out))[:max_size]


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    """atheris's hook: libFuzzer's own mutations, or a container-aware one with a valid CRC."""
    rng = random.Random(seed)
    if rng.random() < 0.35:
        out = atheris.Mutate(data, max_size)
        return fix_crc(out) if rng.random() < 0.6 else out
    return structured_mutate(data, rng, max_size, lambda d, r, m: atheris.Mutate(d, min(m, max(2 * len(d), 64))))


# -- running ----------------------------------------------------------------------------


def option(argv: list[str], name: str, default: int) -> int:
    for arg in argv:
        if arg.startswith(f"-{name}="):
            return int(arg.split("=", 1)[1])
    return default


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def save(prefix: str, data: bytes, artifact_prefix: str) -> str:
    path = f"{artifact_prefix}{prefix}-{hashlib.sha1(data).hexdigest()}"
    with open(path, "wb") as f:
        f.write(data)
    return path


def fallback(argv: list[str]) -> int:
    """Random mutation without coverage feedback: the same mutator, same checks, same figures."""
    runs = option(argv, "atheris_runs", option(argv, "runs", 100_000))
    seed = option(argv, "seed", int(time.time()))
    timeout = option(argv, "timeout", 20)
    rss_limit_mb = option(argv, "rss_limit_mb", 2048)
    artifact_prefix = next((a.split("=", 1)[1] for a in argv if a.startswith("-artifact_prefix=")), "./")
    files = [a for a in argv if not a.startswith("-") and os.path.isfile(a)]
    rng = random.Random(seed)
    pool = list(SEEDS)
    seen: set[str] = set()
    signal.signal(signal.SIGALRM, _alarm)
    print(f"fallback mode (no coverage feedback): -seed={seed} runs={runs}", file=sys.stderr)
    started = time.perf_counter()
    slowest = (0.0, b"")
    inputs = [open(f, "rb").read() for f in files] if files else None
    total = len(inputs) if inputs is not None else runs
    for i in range(total):
        if inputs is not None:
            data = inputs[i]
        elif i < len(pool):
            data = pool[i]
        else:
            data = structured_mutate(rng.choice(pool), rng, 1 << 16, raw_mutate)
        t0 = time.perf_counter()
        signal.alarm(timeout)
        try:
            key = TestOneInput(data)
        except Hang:
            print(f"==== TIMEOUT: one decode ran past {timeout} s; input saved to "
                  f"{save('timeout', data, artifact_prefix)}", file=sys.stderr)
            return 1
        except Exception:
            signal.alarm(0)
            traceback.print_exc()
            print(f"==== Uncaught exception: not a NicodecError; input saved to "
                  f"{save('crash', data, artifact_prefix)}", file=sys.stderr)
            return 1
        finally:
            signal.alarm(0)
        elapsed = time.perf_counter() - t0
        if elapsed > slowest[0]:
            slowest = (elapsed, data)
        if key not in seen and len(pool) < 2000:
            seen.add(key)
            pool.append(data)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if rss_mb > rss_limit_mb:
            print(f"==== OUT OF MEMORY: peak RSS {rss_mb:.0f} MB > {rss_limit_mb} MB; input saved to "
                  f"{save('oom', data, artifact_prefix)}", file=sys.stderr)
            return 1
    wall = time.perf_counter() - started
    print_stats(sys.stderr)
    print(
        f"Done {EXECS} execs in {wall:.1f} s ({EXECS / wall:.0f} exec/s); slowest exec {slowest[0] * 1000:.1f} ms; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; no finding",
        file=sys.stderr,
    )
    return 0


def main() -> int:
    global CODEC
    argv = list(sys.argv)
    if "-h" in argv[1:] or "--help" in argv[1:]:  # not a run of 100,000 inputs
        print(__doc__)
        return 0
    use_fallback = "--fallback" in argv or atheris is None
    argv = [a for a in argv if a != "--fallback"]
    max_pixels = 1 << 20
    for a in list(argv):
        if a.startswith("--max-pixels="):
            max_pixels = int(a.split("=", 1)[1])
            argv.remove(a)
    CODEC = Codec(providers="cpu", threads=1, max_pixels=max_pixels)
    SEEDS.extend(make_seeds(CODEC))
    if use_fallback:
        if atheris is None:
            print("atheris is not installed: running the plain random-mutation fallback", file=sys.stderr)
        return fallback(argv[1:])

    positional = [a for a in argv[1:] if not a.startswith("-")]
    if not any(os.path.isfile(a) for a in positional):  # fuzzing, not replaying: add the seeds
        seed_dir = tempfile.mkdtemp(prefix="nicodec-fuzz-seeds-")
        for i, data in enumerate(SEEDS):
            with open(os.path.join(seed_dir, f"seed-{i}.nic"), "wb") as f:
                f.write(data)
        argv.append(seed_dir)
        atexit.register(shutil.rmtree, seed_dir, True)
    if not any(a.startswith("-timeout=") for a in argv):
        argv.append("-timeout=20")
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append(f"-max_len={max(2 * max(map(len, SEEDS)), 4096)}")
    print(f"seeds: {len(SEEDS)} real files of {', '.join(str(len(d)) for d in SEEDS)} bytes; "
          f"max_pixels={max_pixels}; libFuzzer arguments: {' '.join(argv[1:])}", file=sys.stderr)
    started = time.perf_counter()
    atexit.register(lambda: (print_stats(sys.stderr),
                             print(f"Done {EXECS} execs in {time.perf_counter() - started:.1f} s", file=sys.stderr)))
    atheris.Setup(argv, TestOneInput, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
