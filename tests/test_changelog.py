"""CHANGELOG.md keeps up with the code: its newest version is the package's, and its table of
which nicodec decodes which files names every flag, optional section and model this nicodec
decodes, so a new one cannot ship without the version that first reads it."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from nicodec import format as nicformat
from nicodec.model import default_model_dir, earlier_models_dir

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"


@pytest.fixture(scope="module")
def changelog() -> str:
    if not CHANGELOG.is_file():
        pytest.skip("needs the checkout's (or the sdist's) CHANGELOG.md beside the tests")
    return CHANGELOG.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def table(changelog) -> str:
    """The rows of the table under "Which nicodec decodes which files"."""
    section = changelog.split("## Which nicodec decodes which files", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "the section has no table"
    return "\n".join(rows)


def test_the_newest_version_is_the_packages(changelog):
    versions = re.findall(r"^## (\d+\.\d+\.\d+) \((\d{4}-\d{2}-\d{2})\)$", changelog, flags=re.MULTILINE)
    assert versions, "no '## X.Y.Z (YYYY-MM-DD)' heading"
    assert versions[0][0] == version("nicodec")
    numbers = [tuple(int(part) for part in number.split(".")) for number, _ in versions]
    assert numbers == sorted(numbers, reverse=True) and len(set(numbers)) == len(numbers)
    dates = [date for _, date in versions]
    assert dates == sorted(dates, reverse=True)


def test_each_entry_from_0_7_0_says_first_whether_its_files_changed(changelog):
    """A user deciding whether to upgrade encoders and decoders reads the **Files.** line first:
    "The same files and pixels as X.Y.Z", or what changed (entries before 0.7.0 lack it)."""
    entries = re.split(r"^## (?=\d+\.\d+\.\d+ \()", changelog, flags=re.MULTILINE)[1:]
    checked = 0
    for entry in entries:
        number = tuple(int(part) for part in entry.split(" ", 1)[0].split("."))
        if number >= (0, 7, 0):
            body = entry.split("\n", 1)[1].lstrip("\n")
            assert body.startswith("**Files.** "), f"{entry.splitlines()[0]}: no **Files.** line first"
            checked += 1
    assert checked >= 14


def test_the_tables_last_column_is_this_version(table):
    assert table.splitlines()[0].split("|")[3].strip() == f"{version('nicodec')} decodes them"


def test_the_table_names_every_flag_and_optional_section(table):
    flags = {name: value for name, value in vars(nicformat).items() if name.startswith("FLAG_")}
    assert sum(flags.values()) == nicformat.KNOWN_FLAGS
    for name, value in flags.items():
        assert f"`0x{value:02x}`" in table, f"{name} (0x{value:02x}) is not in CHANGELOG.md's table"
    for group in nicformat.OPTIONAL_SECTIONS:
        for tag in group:
            assert f"`{tag.decode('ascii')}`" in table, f"section {tag!r} is not in CHANGELOG.md's table"


def test_the_table_names_every_model_this_nicodec_decodes(table):
    def short(model_id: str) -> str:
        return model_id.removeprefix("nicodec-mshp-")

    def ids(entry: dict) -> list[str]:  # the model's own and those of the files it decodes, nested or not
        inner = [*entry.get("decodes_files_of", []), *entry.get("decoding", {}).get("decodes_files_of", [])]
        return [entry["model_id"], *(found for listed in inner for found in ids(listed))]

    manifests = [default_model_dir() / "manifest.json", *sorted(earlier_models_dir().glob("*/manifest.json"))]
    for path in manifests:
        for model_id in ids(json.loads(path.read_text(encoding="utf-8"))):
            assert f"`{short(model_id)}`" in table, f"{model_id} ({path.parent.name}) is not in CHANGELOG.md's table"
