"""A model folder: ONNX graphs, frozen integer tables and a manifest that ties them.

Layout (written by ``nicodec-export``)::

    manifest.json              identity, configuration, SHA-256 of every file below
    encoder.onnx               image uint8 -> y, z
    entropy_parameters.onnx    z_hat int32 -> scale_index int32, mean_q int32
    decoder.onnx               y_hat float32 (and, where the post-filter sees it, the
                               header's quality float32) -> image uint8
    decoder_fp16.onnx          (optional) the same synthesis with fp16 weights and arithmetic
    synthesis_gradient.onnx    (optional, encoder only) the gradient of the synthesis's squared
                               error, for refining the latent (``nicodec.refine``)
    tables.npz                 integer CDFs for z (per channel) and y (per scale); for a
                               variable-rate model also the gain vectors of its trained levels

Decoding needs only the manifest, the tables, ``entropy_parameters.onnx`` and ``decoder.onnx``
(``DECODING_FILES``): a copy of a model folder without the other graphs decodes every file the
whole folder does, and says what it cannot do when asked to encode (or to decode in fp16).

A variable-rate model codes at any quality from ``QUALITY_MIN`` to ``QUALITY_MAX``: the
quality picks a position between its trained levels (lowest rate at ``QUALITY_MIN``), and
the gain vectors there are interpolated exponentially between the two neighbouring
levels (``ModelFiles.gains``). The file header records the quality, so the decoder
computes the same inverse gain.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import numbers
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import ModelError
from .exactness import PROBE_SHAPES
from .onnx_external import external_tensor
from .rans import Tables

MANIFEST = "manifest.json"
MODEL_FORMAT = "nicodec-model"
MODEL_FORMAT_VERSION = 2
"""The manifest version ``nicodec-export`` writes; ``load`` also reads version 1 (below)."""
MODEL_FORMAT_VERSIONS = (1, 2)
GRAPHS = ("encoder", "entropy_parameters", "decoder")
"""The graphs every manifest lists (and its model hash covers)."""
OPTIONAL_GRAPHS = ("decoder_fp16",)
ENCODER_GRAPHS = ("synthesis_gradient",)
"""Optional graphs only the encoder runs (``Codec(refine=...)``). They cannot change what a
file decodes to, so the manifest lists them apart, under ``encoder_files``, outside the
model hash: a model folder may gain them without making its files unreadable."""
TABLES = "tables.npz"
DECODING_FILES = ("entropy_parameters.onnx", "decoder.onnx", TABLES)
"""The files a model folder cannot load without: everything decoding needs. The other graphs
may be missing (left out of a copy that only decodes) or damaged; they are then unavailable
(``ModelFiles.unavailable``), and what would run one says why it cannot."""
DECODES_FILES_OF = "decodes_files_of"
"""Manifest key: the earlier models whose files this model also decodes, each as its
``model_id``, ``model_hash``, manifest ``version``, ``files`` (name: SHA-256) and ``decoding``
(:func:`decoding_fields`), enough to recompute its hash. ``nicodec-export --decodes-files-of``
writes it, and loading checks it (:func:`earlier_model_problem`): the earlier model's entropy
side must be this model's, byte for byte, so its files decode to the very same integers; the
pixels come from this model's synthesis."""
ENTROPY_SIDE = ("entropy_parameters.onnx", TABLES)
"""The files that decide a file's integers, besides the manifest's decoding fields."""
QUALITY_MIN = 1.0
QUALITY_MAX = 100.0


def is_real_number(value) -> bool:
    """Whether ``value`` is a real number to take as a setting: Python's and numpy's ints and
    floats, ``Fraction`` and ``Decimal``; not a bool, a string or a complex number."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (numbers.Real, decimal.Decimal))


def check_quality(quality) -> float:
    """``quality`` as the float32 value a header records, or :class:`QualityError` if it is
    not a number from ``QUALITY_MIN`` to ``QUALITY_MAX``."""
    from .errors import QualityError

    if not is_real_number(quality):
        raise QualityError(f"quality must be a number from {QUALITY_MIN:g} to {QUALITY_MAX:g}, not {quality!r}")
    try:
        value = float(quality)
    except OverflowError:  # an int (or a Fraction) beyond any float
        raise QualityError(f"quality must be from {QUALITY_MIN:g} to {QUALITY_MAX:g}, not a number that large") from None
    except ValueError:  # Decimal("sNaN")
        raise QualityError(f"quality must be a number from {QUALITY_MIN:g} to {QUALITY_MAX:g}, not {quality!r}") from None
    if isinstance(quality, decimal.Decimal) and quality.is_finite() and value in (float("inf"), float("-inf")):
        # float() of a Decimal beyond the float range is infinite rather than an OverflowError
        raise QualityError(f"quality must be from {QUALITY_MIN:g} to {QUALITY_MAX:g}, not a number that large")
    if not QUALITY_MIN <= value <= QUALITY_MAX:  # NaN fails too
        shown = f"{value:g}" if float(f"{value:g}") == value or value != value else repr(value)  # 0, not 0.0; 100.00000001
        raise QualityError(f"quality must be from {QUALITY_MIN:g} to {QUALITY_MAX:g}, not {shown}")
    # The header stores a float32 (1 and 100 are exact in it, so the range holds); the
    # decoder's inverse gain is computed from that value.
    return float(np.float32(value))


def quality_position(quality: float, levels: int) -> float:
    """Where ``quality`` lies between a model's trained levels: 0 (lowest rate) to ``levels - 1``."""
    return (quality - QUALITY_MIN) / (QUALITY_MAX - QUALITY_MIN) * (levels - 1)


def default_model_dir() -> Path:
    """The model that ships inside the package."""
    return Path(str(resources.files("nicodec") / "models" / "default"))


def shipped_model_id() -> str | None:
    """The shipped default model's id, from its manifest alone (no file is hashed); None for a
    manifest that cannot be read (the commands that load the model say why)."""
    try:
        model_id = json.loads((default_model_dir() / MANIFEST).read_text(encoding="utf-8"))["model_id"]
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    return model_id if isinstance(model_id, str) else None


def earlier_models_dir() -> Path:
    """Where the package keeps the models that earlier releases shipped, one folder each
    (named by model id), for their files to decode after an upgrade: their decoding files
    (``DECODING_FILES`` and the manifest) at least."""
    return Path(str(resources.files("nicodec") / "models" / "earlier"))


def package_model_for(model_id: str, model_hash: bytes) -> tuple[str, Path] | None:
    """The package's model that decodes the files of ``(model_id, model_hash)``, as ``(its id,
    its folder)``: the shipped default (its own files and those of its ``decodes_files_of``), or
    an earlier one the package keeps (:func:`shipped_earlier_models`); None for none. Read from
    the manifests, not checked (``nicodec info`` tells it without loading a model)."""
    for candidate in [default_model_dir(), shipped_earlier_models().get((model_id, model_hash))]:
        if candidate is None:
            continue
        try:
            keys = _model_keys(json.loads((candidate / MANIFEST).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue  # a damaged install: the commands that load the model say why
        if (model_id, model_hash) in keys:
            return keys[0][0], candidate
    return None


def shipped_earlier_models() -> dict[tuple[str, bytes], Path]:
    """The earlier models the package ships (:func:`earlier_models_dir`), by the ``(model id,
    8-byte model hash)`` their files record, read from their manifests, with the models whose
    files each of them decodes (its ``decodes_files_of``): a folder is checked in full
    (:meth:`ModelFiles.load`) when a file needs it. A folder without a readable manifest is left
    out, and the files of its model are refused as any other model's."""
    found: dict[tuple[str, bytes], Path] = {}
    try:
        folders = sorted(earlier_models_dir().iterdir())
    except OSError:  # none shipped
        return found
    for folder in folders:
        try:
            keys = _model_keys(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue
        for key in keys:
            found.setdefault(key, folder)
    return found


def _model_keys(manifest) -> list[tuple[str, bytes]]:
    """The ``(model id, 8-byte hash)`` of a manifest's model and of those whose files it
    decodes, as files record them.

    Raises:
        ValueError, TypeError, KeyError, AttributeError: not a manifest of that shape.
    """
    keys = []
    for entry in [manifest, *manifest.get("decodes_files_of", [])]:
        model_id, model_hash = entry["model_id"], entry["model_hash"]
        if not isinstance(model_id, str) or not isinstance(model_hash, str):
            raise TypeError("a model id and hash are strings")
        keys.append((model_id, bytes.fromhex(model_hash)[:8]))
    return keys


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(files: dict[str, str], decoding: dict | None = None) -> str:
    """SHA-256 over the sorted ``name sha256`` lines of a model's files, then (manifest
    version 2) a ``decoding <json>`` line of the manifest's fields that decoding reads."""
    lines = "".join(f"{name} {files[name]}\n" for name in sorted(files))
    if decoding is not None:
        lines += "decoding " + json.dumps(decoding, sort_keys=True, separators=(",", ":")) + "\n"
    return hashlib.sha256(lines.encode()).hexdigest()


def decoding_fields(manifest: dict) -> dict:
    """The manifest's values that change what a file decodes to, besides the files themselves.

    A version 2 manifest's hash covers them, so a manifest edited by hand (say, another
    ``mean_bits``) makes a model whose hash no file names, instead of one that decodes
    every file to a wrong picture.
    """
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    rate = manifest.get("rate") if isinstance(manifest.get("rate"), dict) else {}
    fields = {
        "downsampling": manifest.get("downsampling"),
        "mean_bits": manifest.get("mean_bits"),
        "scale_levels": manifest.get("scale_levels"),
        "entropy_parameters": manifest.get("entropy_parameters"),
        "M": config.get("M"),
        "Nh": config.get("Nh"),
        "variable_rate": bool(rate.get("variable")),
    }
    if manifest.get(DECODES_FILES_OF):
        # Which files a model accepts is part of its identity too (only when it accepts others,
        # so the hashes of models without the list stay as they were).
        fields[DECODES_FILES_OF] = manifest[DECODES_FILES_OF]
    return fields


def manifest_hash(manifest: dict) -> str:
    """The content hash a manifest must carry: its files only in version 1, its files and
    :func:`decoding_fields` from version 2."""
    files = manifest.get("files", {})
    return content_hash(files) if manifest.get("version") == 1 else content_hash(files, decoding_fields(manifest))


def _what_folder_is(folder: Path) -> str:
    """What a folder without a manifest is, where that tells the way on: missing, or a training
    run's (its checkpoints are exported into a model folder)."""
    try:
        if not folder.exists():
            package = resources.files("nicodec")
            if not isinstance(package, Path) and folder.is_relative_to(str(package)):  # in a zip (a zipapp's, PEX's)
                return (" (nicodec is imported from a zip archive, and its models must be files on disk: install "
                        "it with pip, or use a model folder on disk: --model, model=)")
            return " (no such folder)"
        checkpoints = sorted(path.name for path in folder.glob("*.pt"))
    except OSError:
        return ""
    if not checkpoints:
        return ""
    return (f" (it holds a training checkpoint, {checkpoints[0]}: nicodec-export CHECKPOINT --out DIR makes a "
            "model folder from one)")


@dataclass(frozen=True)
class ModelFiles:
    """A verified model folder, with its tables loaded.

    Attributes:
        path: the folder.
        manifest: the parsed manifest.
        model_id: the identity written into every file this model encodes.
        model_hash: first 8 bytes of the content hash, also written into every file.
        z_tables, y_tables: the frozen integer CDF tables.
        log_gain, log_inverse_gain: (levels, M) float32 logs of the trained gain vectors of
            a variable-rate model; ``None`` for a single-rate model.
        scale_table: (scale levels,) float32, the Gaussian scale of each y table (``None``
            if the tables file lacks it); the encoder's refinement uses it.
        unavailable: the graphs the manifest lists, outside ``DECODING_FILES``, that are
            missing or damaged (file name: what is wrong): what needs one cannot run, the
            model still decodes (and encodes, if ``encoder.onnx`` is not among them).
        decodes_files_of: ``(model_id, 8-byte model hash)`` of the earlier models whose files
            this model also decodes (:data:`DECODES_FILES_OF`).
    """

    path: Path
    manifest: dict
    model_id: str
    model_hash: bytes
    z_tables: Tables
    y_tables: Tables
    log_gain: np.ndarray | None = None
    log_inverse_gain: np.ndarray | None = None
    scale_table: np.ndarray | None = None
    unavailable: dict[str, str] = field(default_factory=dict)
    decodes_files_of: tuple[tuple[str, bytes], ...] = ()

    @property
    def variable_rate(self) -> bool:
        """Whether the model codes at a chosen quality (gain units) rather than one fixed rate."""
        return self.log_gain is not None

    @property
    def default_quality(self) -> float | None:
        """The quality ``encode`` uses when none is given (``None`` for a single-rate model)."""
        return float(self.manifest["rate"]["default_quality"]) if self.variable_rate else None

    def check_takes(self, quality) -> None:
        """Refuse a quality given to a single-rate model (:class:`QualityError`)."""
        from .errors import QualityError

        if quality is not None and not self.variable_rate:
            raise QualityError(f"the model {self.model_id} is single-rate: it codes every image at the one rate "
                               "it was trained for and takes no quality")

    def check_available(self, name: str, doing: str) -> None:
        """Refuse a graph file ``name`` that is missing or damaged: :class:`ModelError`, saying
        what the model then cannot do (``doing``: "encode", "decode", ...)."""
        from .errors import ModelError

        problem = self.unavailable.get(name)
        if problem is not None:
            raise ModelError(f"the model {self.model_id} cannot {doing}: {problem}")

    def gains(self, quality: float) -> tuple[np.ndarray, np.ndarray]:
        """The gain and inverse gain vectors (float32, M) at ``quality``.

        ``position = (quality - QUALITY_MIN) / (QUALITY_MAX - QUALITY_MIN) * (levels - 1)``;
        between levels ``l`` and ``l + 1`` the logs mix linearly (Cui et al., CVPR 2021).
        """
        assert self.log_gain is not None and self.log_inverse_gain is not None
        return (np.exp(_mix_levels(self.log_gain, quality)).astype(np.float32),
                np.exp(_mix_levels(self.log_inverse_gain, quality)).astype(np.float32))

    @property
    def downsampling(self) -> int:
        return int(self.manifest["downsampling"])

    @property
    def mean_bits(self) -> int:
        return int(self.manifest["mean_bits"])

    @property
    def latent_channels(self) -> int:
        return int(self.manifest["config"]["M"])

    @property
    def hyper_channels(self) -> int:
        return int(self.manifest["config"]["Nh"])

    @property
    def entropy_check(self) -> str | None:
        """The SHA-256 the entropy-parameter graph's integers on :func:`nicodec.exactness.probes`
        (of version :attr:`entropy_probe`) must have (manifest ``entropy_check``), or None for a
        model exported without one."""
        check = self.manifest.get("entropy_check")
        return check["sha256"] if check else None

    @property
    def entropy_probe(self) -> int:
        """The version of the probe that ``entropy_check`` was computed on."""
        return int((self.manifest.get("entropy_check") or {}).get("probe", 0))

    @property
    def integer_entropy(self) -> bool:
        """Whether the entropy-parameter graph is integer-only (exact under any session settings)."""
        return self.manifest.get("entropy_parameters") == "integer"

    def lmbda(self, quality: float | None = None) -> float:
        """The rate-distortion trade-off the model was trained for at ``quality`` (``None``:
        the default quality): between two trained levels, their lambdas mixed in the log as
        the gains are.

        Raises:
            ModelError: the manifest gives no positive, finite lambda (for each level).
        """
        rate = self.manifest.get("rate", {})
        values = rate.get("lmbdas") if self.variable_rate else [rate.get("lmbda", self.manifest["config"].get("lmbda"))]
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                lmbdas = np.log(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError):
            lmbdas = np.array([np.nan])
        if not np.all(np.isfinite(lmbdas)) or len(lmbdas) != (len(self.log_gain) if self.variable_rate else 1):
            raise ModelError(f"the manifest of {self.path} gives no usable lambda for each of its rates: {values!r}")
        if not self.variable_rate:
            return float(values[0])
        return float(np.exp(_mix_levels(lmbdas, self.default_quality if quality is None else quality)))

    def graph(self, name: str) -> Path:
        return self.path / f"{name}.onnx"

    def graph_bytes(self, name: str) -> bytes:
        """The graph's file as it is now, checked again against its SHA-256 in the manifest: a
        graph loads at its first use (in a child process that fork made, again), and the
        folder may have changed since :meth:`load` checked it (a package upgraded under a
        running server): another decoder's graph would decode this model's files to other pixels.

        Raises:
            ModelError: the file cannot be read, or it is no longer the file the manifest lists.
        """
        file = f"{name}.onnx"
        digest = self.manifest["files"].get(file) or self.manifest.get("encoder_files", {}).get(file)
        try:
            data = (self.path / file).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read {self.path / file}: {exc.strerror or exc}") from None
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:
            raise ModelError(f"{self.path / file} changed after the model was loaded: it no longer matches its "
                             "SHA-256 in the manifest (was the model folder replaced while in use?)")
        try:
            outside = external_tensor(data)
        except ValueError as exc:
            raise ModelError(f"{self.path / file} is no ONNX model nicodec can check: {exc}") from None
        if outside is not None:
            raise ModelError(f"{self.path / file} keeps the data of its tensor {outside} in another file: nicodec "
                             "runs graphs that hold all their weights (the model's hash covers its own files only)")
        return data

    def has_graph(self, name: str) -> bool:
        """Whether the folder has this graph, usable (a missing or damaged one is not)."""
        file = f"{name}.onnx"
        if file in self.unavailable:
            return False
        return file in self.manifest["files"] or file in self.manifest.get("encoder_files", {})

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ModelFiles":
        """Read and check a model folder.

        Args:
            path: the folder; ``None`` for the shipped default model. Every file's SHA-256 is
                checked against the manifest.

        Raises:
            ModelError: a missing folder, a bad manifest, a file of ``DECODING_FILES`` missing or
                not matching its hash, or a hash mismatch. Other graphs missing or damaged are
                only ``unavailable``.
        """
        folder = Path(path) if path is not None else default_model_dir()
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise ModelError(f"not a nicodec model folder (no {MANIFEST}): {folder}{_what_folder_is(folder)}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
            raise ModelError(f"unreadable manifest {manifest_path}: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT \
                or manifest.get("version") not in MODEL_FORMAT_VERSIONS:
            raise ModelError(
                f"{manifest_path} is not a {MODEL_FORMAT} manifest of version "
                + " or ".join(map(str, MODEL_FORMAT_VERSIONS))
            )
        _check_manifest(manifest, manifest_path)
        files = manifest.get("files", {})
        optional = [f"{g}.onnx" for g in OPTIONAL_GRAPHS if f"{g}.onnx" in files]
        for name in [f"{g}.onnx" for g in GRAPHS] + [TABLES]:
            if name not in files:
                raise ModelError(f"the manifest of {folder} does not list {name}")
        encoder_files = manifest.get("encoder_files", {})
        if not isinstance(encoder_files, dict) or not set(encoder_files) <= {f"{g}.onnx" for g in ENCODER_GRAPHS}:
            raise ModelError(f"bad manifest {manifest_path}: encoder_files may list only "
                             + ", ".join(f"{g}.onnx" for g in ENCODER_GRAPHS))
        # Only what decoding needs must be there and whole: a graph for anything else that is
        # missing or damaged is unavailable, not fatal (the Codec says why when it is needed).
        unavailable = {}
        listed = [(name, files[name]) for name in [f"{g}.onnx" for g in GRAPHS] + [TABLES] + optional]
        for name, digest in listed + list(encoder_files.items()):
            if not (folder / name).is_file():
                problem = f"{folder / name} is missing"
            elif sha256_file(folder / name) != digest:
                problem = f"{folder / name} does not match its SHA-256 in the manifest"
            else:
                continue
            if name in DECODING_FILES:
                raise ModelError(f"model file {problem}")
            unavailable[name] = problem
        if manifest_hash(manifest) != manifest.get("model_hash"):
            what = "file list" if manifest["version"] == 1 else "file list and decoding fields"
            raise ModelError(f"the model hash in {manifest_path} does not match its {what}")
        for entry in manifest.get(DECODES_FILES_OF, []):
            problem = earlier_model_problem(entry, manifest)
            if problem:
                raise ModelError(f"{manifest_path} lists {entry['model_id']!r} under {DECODES_FILES_OF}, "
                                 f"but {problem}")
        try:
            with np.load(folder / TABLES, allow_pickle=False) as npz:
                z_tables = Tables(npz["z_cdf"], npz["z_sizes"], npz["z_offsets"])
                y_tables = Tables(npz["y_cdf"], npz["y_sizes"], npz["y_offsets"])
                scales = npz["scale_table"].astype(np.float32) if "scale_table" in npz.files else None
                gains = [npz[k].astype(np.float32) for k in ("log_gain", "log_inverse_gain") if k in npz.files]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"bad tables in {folder / TABLES}: {exc}") from exc
        if y_tables.n_tables != manifest["scale_levels"] or z_tables.n_tables != manifest["config"]["Nh"]:
            raise ModelError(f"the tables in {folder / TABLES} do not match the manifest's scale levels and channels")
        variable = bool(manifest.get("rate", {}).get("variable"))
        if variable != bool(gains) or (gains and not _good_gains(gains, manifest)):
            raise ModelError(
                f"the gain vectors in {folder / TABLES} do not match the manifest's rate section "
                "(a variable-rate model needs log_gain and log_inverse_gain of shape (levels >= 2, M), "
                "finite, and a default_quality in 1..100)"
            )
        return cls(
            path=folder,
            manifest=manifest,
            model_id=manifest["model_id"],
            model_hash=bytes.fromhex(manifest["model_hash"])[:8],
            z_tables=z_tables,
            y_tables=y_tables,
            log_gain=gains[0] if gains else None,
            log_inverse_gain=gains[1] if gains else None,
            scale_table=scales if scales is not None and scales.shape == (y_tables.n_tables,) else None,
            unavailable=unavailable,
            decodes_files_of=tuple((e["model_id"], bytes.fromhex(e["model_hash"])[:8])
                                   for e in manifest.get(DECODES_FILES_OF, [])),
        )


def _mix_levels(table: np.ndarray, quality: float) -> np.ndarray:
    """Row ``l`` and ``l + 1`` of ``table`` (one per trained level) mixed linearly in float64
    at ``quality``'s position ``l + f`` between them."""
    position = quality_position(quality, len(table))
    low = min(int(np.floor(position)), len(table) - 2)
    frac = position - low
    return table[low].astype(np.float64) * (1 - frac) + table[low + 1].astype(np.float64) * frac


def _good_gains(gains: list[np.ndarray], manifest: dict) -> bool:
    shape = (len(manifest["rate"].get("lmbdas", [])), manifest["config"]["M"])
    quality = manifest["rate"].get("default_quality")
    return (
        all(g.shape == shape and np.isfinite(g).all() for g in gains)
        and shape[0] >= 2
        and isinstance(quality, (int, float))
        and QUALITY_MIN <= quality <= QUALITY_MAX
    )


def earlier_model_problem(entry: dict, manifest: dict) -> str | None:
    """Why ``manifest``'s model cannot decode the files of the earlier model ``entry`` describes
    (an item of :data:`DECODES_FILES_OF`), or None when it can.

    The entry's files and decoding fields must give its ``model_hash`` (the decoding fields
    count from manifest version 2, as in :func:`manifest_hash`), and its entropy side
    (:data:`ENTROPY_SIDE` and the decoding fields) must equal this model's. A list edited by
    hand can then name only models whose files really decode to the same integers here.
    """
    decoding = entry["decoding"]
    if content_hash(entry["files"], decoding if entry["version"] == 2 else None) != entry["model_hash"]:
        return "the files and decoding fields listed for it do not give its model hash"
    ours = {k: v for k, v in decoding_fields(manifest).items() if k != DECODES_FILES_OF}
    theirs = {k: v for k, v in decoding.items() if k != DECODES_FILES_OF}
    differ = [name for name in ENTROPY_SIDE if entry["files"].get(name) != manifest["files"].get(name)]
    differ += [f"{k} ({theirs.get(k)} against {v})" for k, v in ours.items() if theirs.get(k) != v]
    if differ:
        return f"its entropy side differs in {', '.join(differ)}"
    return None


def _is_digest(value) -> bool:
    """Whether ``value`` is a SHA-256 hex digest (64 lowercase hex digits)."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _check_manifest(manifest, path: Path) -> None:
    """Every field the runtime reads, present and of the right type, so use never fails later."""
    from .format import model_id_problem

    def positive_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    problems = []
    problem = model_id_problem(manifest.get("model_id"))
    if problem:
        problems.append(problem)
    for key in ("downsampling", "mean_bits", "scale_levels"):
        if not positive_int(manifest.get(key)):
            problems.append(f"{key} must be a positive integer")
    if positive_int(manifest.get("downsampling")) and manifest["downsampling"] % 4:
        problems.append("downsampling must be a multiple of 4 (the latent's stride is a quarter of it)")
    config = manifest.get("config")
    if not isinstance(config, dict) or not all(positive_int(config.get(k)) for k in ("M", "Nh")):
        problems.append("config must give the channel counts M and Nh")
    check = manifest.get("entropy_check")
    known_probe = isinstance(check, dict) and type(check.get("probe")) is int and check["probe"] in PROBE_SHAPES
    if check is not None and not (known_probe and _is_digest(check.get("sha256"))
                                  and manifest.get("entropy_parameters") == "integer"):
        versions = " or ".join(map(str, PROBE_SHAPES))
        problems.append(f'entropy_check must be {{"probe": {versions}, "sha256": a SHA-256 hex digest}}, '
                        'for an integer entropy-parameter graph')
    if not isinstance(manifest.get("rate", {}), dict):
        problems.append("rate must be an object")
    if not isinstance(manifest.get("files"), dict):
        problems.append("files must map file names to SHA-256 digests")
    if not _is_digest(manifest.get("model_hash")):
        problems.append("model_hash must be a SHA-256 hex digest")
    others = manifest.get(DECODES_FILES_OF, [])
    if not isinstance(others, list) or not all(
        isinstance(e, dict) and set(e) == {"model_id", "model_hash", "version", "files", "decoding"}
        and model_id_problem(e["model_id"]) is None
        and _is_digest(e["model_hash"]) and e["version"] in MODEL_FORMAT_VERSIONS and not isinstance(e["version"], bool)
        and isinstance(e["files"], dict) and all(isinstance(k, str) and _is_digest(v) for k, v in e["files"].items())
        and isinstance(e["decoding"], dict)
        for e in others
    ):
        legacy = isinstance(others, list) and others and all(isinstance(e, dict) and set(e) == {"model_id", "model_hash"}
                                                             for e in others)
        problems.append(f"{DECODES_FILES_OF} must list objects of a model_id, a SHA-256 hex model_hash, "
                        "a manifest version, the model's files and its decoding fields"
                        + (" (this folder lists an id and a hash alone, the form of the first exports of 2026-11-30, "
                           "which later builds do not read: use a later export of this model)" if legacy else ""))
    elif others and manifest.get("version") == 1:
        problems.append(f"{DECODES_FILES_OF} needs manifest version 2, whose hash covers it")
    if problems:
        raise ModelError(f"bad manifest {path}: " + "; ".join(problems))
