"""Arguments the command line refuses before Typer reads them.

An empty argument or an empty ``--name=`` value (a shell variable that was not set) and
``-o=x.nic`` (which Click reads as ``-o`` with the value ``=x.nic``) would otherwise name the
current folder or a file called ``=x.nic``: :func:`empty_value` finds them first. The numbers
options take are read here too, in ASCII digits only (:func:`whole_number_text`), and the
providers and their options (:func:`provider_options`), for the command line and the Ray recipe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import PurePath

from .sessions import CUDA, PROVIDER_CHOICES


VALUE_OPTIONS = frozenset({"-o", "--output", "--provider", "--provider-option", "--threads", "--jobs", "--model", "--max-pixels", "--tile",
                           "--quality", "--target-bpp", "--target-psnr", "--max-bytes", "--refine", "--precision",
                           "--format", "--background", "--thumbnail", "--metadata"})
"""The options that take a value (the next argument, unless given as ``--name=value``)."""


SHORT_OPTIONS = {"encode": ("-f", "-o"), "decode": ("-f", "-o")}
"""The commands with short options, and those options (``-o`` takes a value, ``-f`` none)."""
UNSET = " (a shell variable that was not set?)"


_WHOLE = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_REAL = re.compile(r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)\s*",
                   re.ASCII | re.IGNORECASE)
"""Numbers as a command line writes them: ASCII digits, without the underscores and the other
scripts' digits (``4_0``, ``٤٠``) that Python's ``int`` and ``float`` also read."""


def whole_number_text(text: str) -> int | None:
    """``text`` as a whole number in ASCII digits (a sign and spaces around allowed), or None."""
    if not _WHOLE.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (4,300 by default)
        return None


def real_number_text(text: str) -> float | None:
    """``text`` as a decimal number in ASCII (``nan`` and ``inf`` included), or None."""
    return float(text) if _REAL.fullmatch(text) else None


def empty_argument(given: list[str], number: int) -> str:
    """What is wrong with the empty argument ``number`` (counted from 1): the value of the option
    before it (``--quality ""``), named as such, or an argument in its place (a file's name)."""
    before = given[number - 2] if number > 1 else None
    if before in VALUE_OPTIONS:
        return f"the value of {before} (argument {number}) is empty{UNSET}"
    return f"argument {number} is empty{UNSET}"


def asks_for_help(given: list[str]) -> bool:
    """Whether the command line asks for help: ``--help`` or ``-h`` before any ``--``, and not as
    an option's value (``-o --help`` names a file, which :func:`empty_value` refuses: it had been
    taken for help, and Click wrote a file called ``--help``), or no argument at all (``nicodec``
    alone prints its help)."""
    value_next = False
    for arg in given:
        if value_next:
            value_next = False
            continue
        if arg == "--":
            return False
        if arg == "--help" or re.fullmatch(r"-[fh]*h[fh]*(o.*)?", arg, re.DOTALL):  # -h, -fh, -hfo x: Click's help
            return True
        value_next = arg in VALUE_OPTIONS or re.fullmatch(r"-f*o", arg) is not None  # -fo: -o's value next
    return not given


def empty_value(given: list[str]) -> tuple[int, str] | None:
    """The first argument that gives an option an empty or mistyped value, with what is wrong
    with it, or None: ``--name=`` (``--model="$dir"`` with ``$dir`` unset: ``--model`` would
    read the current folder as the model), and for the commands with ``-o``, ``-o=`` or
    ``-o=x.nic`` (Click gives ``-o`` the value ``=`` or ``=x.nic``: a file of that name), alone
    or ending a cluster of short flags (``-fo=``); and an output named like an option (``-o -f``,
    ``-o --force``: ``-o $OUT -f`` with ``$OUT`` unset wrote a file called ``-f``, and did not
    force). An option's own value (``-o --x=``) is not one, nor is anything after ``--``; a
    cluster with a letter the command lacks is Click's to name, and a command line asking for
    ``--help`` gets it."""
    if asks_for_help(given):
        return None
    command = next((arg for arg in given if not arg.startswith("-")), None)
    short = SHORT_OPTIONS.get(command, ())
    after_value = False
    valued = ""  # the option the next argument is the value of
    for number, arg in enumerate(given, 1):
        if after_value:
            after_value = False
            if valued in ("-o", "--output") and re.fullmatch(r"-[A-Za-z]|--[A-Za-z][A-Za-z0-9-]*", arg):
                return number, (f"argument {number} ({arg}) is the value of {valued}, and it is an option: name the "
                                f"output after {valued}{UNSET}, or write ./{arg} for a file of that name")
            continue
        if arg == "--":
            return None
        if re.fullmatch(r"--[A-Za-z][A-Za-z0-9-]*=", arg):
            return number, f"argument {number} ({arg}) has an empty value{UNSET}"
        cluster = re.fullmatch(r"-([A-Za-z]+)(.*)", arg, re.DOTALL)
        if cluster:  # -f, -o, -fo, -fo=, -ox.nic: the first letter that takes a value takes the rest
            letters, tail = cluster.groups()
            for at, letter in enumerate(letters):
                if f"-{letter}" not in short:
                    break  # an option this command lacks: Click says so
                if f"-{letter}" in VALUE_OPTIONS:
                    rest = letters[at + 1:] + tail
                    if rest.startswith("="):
                        return number, (f"argument {number} ({arg}) gives -{letter} the value {rest!r}; a short "
                                        f"option takes its value without = (-{letter} {rest[1:] or 'VALUE'})")
                    after_value, valued = rest == "", f"-{letter}"
                    break
            continue
        after_value, valued = arg in VALUE_OPTIONS, arg
    return None


def dash_files(given: list[str]) -> list[str]:
    """``given`` with each argument that names the file called ``-`` by a path (``./-``,
    ``./-/``) put under the current folder's absolute path, as typed (a final ``/`` kept: an
    output folder). Paths make ``./-`` into ``-``, which the commands read as standard input or
    output: ``nicodec encode ./*`` in a folder holding a file named ``-`` was refused as ``-``
    among several inputs, and ``encode ./- -o x.nic < other.png`` coded the other image. An
    argument that begins with ``-`` (``-`` itself, an option) is left as it is. Raises
    ValueError, naming the argument, when the current folder is gone."""
    named = []
    for arg in given:
        if not arg.startswith("-") and PurePath(arg) == PurePath("-"):
            try:
                arg = os.path.join(os.getcwd(), arg)
            except OSError as exc:  # left as it is, it would be standard input
                raise ValueError(f"{arg} names a file in the current folder, which is gone "
                                 f"({exc.strerror or exc})") from None
        named.append(arg)
    return named


def is_provider_choice(text: str) -> bool:
    """Whether ``text`` names providers as nicodec's options take them: ``auto``, ``cpu``, ``cuda``,
    or one of onnxruntime's provider names (``OpenVINOExecutionProvider``), which onnxruntime
    itself is asked about when a codec is made."""
    return text in PROVIDER_CHOICES or (text.endswith("ExecutionProvider") and text.isidentifier())


def provider_options(texts: Sequence[str]) -> dict[str, str]:
    """``--provider-option``'s ``KEY=VALUE`` texts as a provider's options.

    Raises:
        ValueError: a text that is not ``KEY=VALUE``, or a key given twice (saying which).
    """
    options: dict[str, str] = {}
    for text in texts:
        key, equals, value = text.partition("=")
        if not equals or not key or key != key.strip():
            raise ValueError(f"{text!r} is not KEY=VALUE (such as device_type=GPU)")
        if key in options:
            raise ValueError(f"{key} is given twice")
        options[key] = value
    return options


def with_options(provider: str, options: dict[str, str], option: str = "--provider") -> str | list:
    """A codec's ``providers`` from a command line's provider (``auto``, ``cpu``, ``cuda`` or a
    name) and the options given for it: the provider alone, or a list of it paired with them.

    Raises:
        ValueError: options for ``auto`` or ``cpu``, which name no one provider to give them to.
    """
    if not options:
        return provider
    if provider in ("auto", "cpu"):
        raise ValueError(f"{option} is {provider}: name the provider the options are for (cuda, or an onnxruntime "
                         "provider's name)")
    return [(CUDA if provider == "cuda" else provider, options)]


def metadata_kept(text: str) -> str:
    """``--metadata``'s value (the command line's and the Ray recipe's): ``all``, ``none``, or
    kinds of :data:`nicodec.inputs.METADATA_KINDS` separated by commas (any case, spaces around
    them), given back as such a list, each kind once, in that order.

    Raises:
        ValueError: a name that is no kind, or ``all`` or ``none`` among kinds.
    """
    from .inputs import METADATA_KINDS

    words = [word.strip().lower() for word in str(text).split(",")]
    if words in (["all"], ["none"]):
        return words[0]
    unknown = next((word for word in words if word not in METADATA_KINDS), None)
    if unknown in ("all", "none"):
        raise ValueError(f"{unknown} stands alone: give it, or kinds of metadata with commas (icc,exif)")
    if unknown is not None:
        shown = repr(unknown) if unknown else "an empty name"
        raise ValueError(f"{shown} is no kind of metadata: give {', '.join(METADATA_KINDS[:-1])} or "
                         f"{METADATA_KINDS[-1]} (several with commas: icc,exif), all or none")
    return ",".join(kind for kind in METADATA_KINDS if kind in words)


def stripped_by(keep: str | None, strip: bool = False) -> bool | frozenset[str]:
    """What ``--strip`` and ``--metadata KEEP`` (:func:`metadata_kept`'s value; None: not given)
    leave out, as ``strip`` takes it: True for ``--strip``, else the kinds ``KEEP`` does not name.

    Raises:
        ValueError: ``--strip`` with ``--metadata`` other than ``none``.
    """
    from .inputs import METADATA_KINDS

    if strip:
        if keep not in (None, "none"):
            raise ValueError(f"--strip leaves out every kind of metadata, and --metadata {keep} keeps "
                             f"{'them all' if keep == 'all' else 'some'}: give one of them")
        return True
    if keep is None or keep == "all":
        return frozenset()
    return frozenset(METADATA_KINDS) - frozenset(() if keep == "none" else keep.split(","))
