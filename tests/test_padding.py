"""Padding to the latent's stride: an image whose sides are not multiples of 64 is padded to
multiples of 16 (``FLAG_FINE_PADDING``), so the latent codes no rows or columns of padding
alone; files of before (padded to 64) still decode, and sides that are multiples of 64 give the
files they gave before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nicodec import Codec
from nicodec import format as nicformat
from nicodec.errors import FormatError, PixelLimitError

from conftest import padded_to_64 as coarse
from conftest import synthetic_photo


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize("height, width", [(65, 97), (64, 90), (128, 70), (130, 3), (1, 1), (150, 520)])
def test_an_image_off_the_grid_is_padded_to_16_and_flagged(codec, height, width):
    photo = synthetic_photo(height, width, seed=2)
    data = codec.encode(photo)
    assert data[5] & nicformat.FLAG_FINE_PADDING
    header, z_hat, symbols, mean_q = codec.decode_symbols(data)
    latent = (-(-height // 16), -(-width // 16))
    assert symbols.shape[2:] == mean_q.shape[2:] == latent
    assert z_hat.shape[2:] == (-(-height // 64), -(-width // 64))
    decoded = codec.decode(data, as_array=True)
    assert decoded.shape == photo.shape
    old = coarse(codec, photo)
    assert not old[5] & nicformat.FLAG_FINE_PADDING
    assert codec.decode_symbols(old)[2].shape[2:] == (4 * -(-height // 64), 4 * -(-width // 64))
    fine_area = -(-height // 16) * 16 * -(-width // 16) * 16
    if fine_area < 0.7 * -(-height // 64) * 64 * -(-width // 64) * 64:  # much less padding (1x1: 16x16, not 64x64)
        assert len(data) < len(old)  # (a little less can cost a few bytes: 64x90 took 306 against 302)
    if height * width > 100:  # and about the same picture (one pixel's error says little)
        assert psnr(decoded, photo) > psnr(codec.decode(old, as_array=True), photo) - 0.5


def test_sides_that_are_multiples_of_64_give_the_files_of_before(codec):
    photo = synthetic_photo(64, 192, seed=3)
    data = codec.encode(photo, quality=30)
    assert data == coarse(codec, photo, quality=30)
    assert not data[5] & nicformat.FLAG_FINE_PADDING
    # where the flag changes nothing, it decodes the same
    header, sections = nicformat.unpack(data)
    flagged = nicformat.pack(dataclasses.replace(header, flags=nicformat.FLAG_FINE_PADDING), sections)
    assert flagged != data
    np.testing.assert_array_equal(codec.decode(flagged, as_array=True), codec.decode(data, as_array=True))


def test_a_file_padded_to_64_reads_as_one_padded_to_16_does_not(codec):
    """The flag is what tells the two apart: taken away, a finely padded file's latent has
    other dimensions, and its stream is refused or decodes to another picture."""
    photo = synthetic_photo(70, 100, seed=4)
    data = codec.encode(photo)
    header, sections = nicformat.unpack(data)
    unflagged = nicformat.pack(dataclasses.replace(header, flags=0), sections)
    try:
        wrong = codec.decode(unflagged, as_array=True)
    except FormatError:
        return
    assert psnr(wrong, photo) < psnr(codec.decode(data, as_array=True), photo) - 3


def test_tiles_give_the_whole_images_file_and_pixels_off_the_grid():
    """A tile reaching the image's end runs on a partial 64-pixel unit, as the whole image does."""
    photo = synthetic_photo(150, 600, seed=5)  # 160x608 padded: 3x10 units of 64, the last ones partial
    whole, tiled = Codec(providers="cpu"), Codec(providers="cpu", tile=64)
    data = whole.encode(photo)
    assert tiled.encode(photo) == data
    np.testing.assert_array_equal(tiled.decode(data, as_array=True), whole.decode(data, as_array=True))


@pytest.mark.parametrize("tile", [1024, 64])
def test_an_entropy_parameter_graph_giving_less_than_the_latent_is_a_model_error(monkeypatch, tile):
    """The entropy parameters are cut to the latent (written at its size on tiles); a graph
    that gives fewer rows than the latent has is the model's fault, said so, not numpy's
    broadcast error or a latent read short."""
    from nicodec.errors import ModelError

    photo = synthetic_photo(150, 200, seed=6)  # 160x208 padded: y 10x13, the graph's outputs 12x16
    codec = Codec(providers="cpu", tile=tile)
    data = codec.encode(photo)
    real = codec._session

    class Short:
        def __init__(self, session):
            self.session = session

        def run(self, names, feeds, options=None):
            return [r[:, :, :-3] for r in self.session.run(names, feeds, options)]

    monkeypatch.setattr(codec, "_session", lambda name: Short(real(name)) if name == "entropy_parameters" else real(name))
    with pytest.raises(ModelError, match="entropy-parameter graph gave outputs|too small for its part"):
        codec.decode(data)


def test_refinement_and_restoration_code_an_image_off_the_grid():
    photo = synthetic_photo(40, 90, seed=6)
    for options in ({"refine": 2}, {"restoration": True}):
        codec = Codec(providers="cpu", **options)
        data = codec.encode(photo)
        assert data[5] & nicformat.FLAG_FINE_PADDING
        decoded = codec.decode(data, as_array=True)
        assert decoded.shape == photo.shape and psnr(decoded, photo) > 25


def test_the_pixel_limit_counts_the_padding_the_file_uses():
    """A strip 1 pixel high is padded to 16 rows now (64 before): the limit counts those."""
    codec = Codec(providers="cpu", max_pixels=16 * 160)
    photo = synthetic_photo(1, 160, seed=7)
    data = codec.encode(photo)  # 16 x 160 padded: at the limit
    assert codec.decode(data, as_array=True).shape == photo.shape
    with pytest.raises(PixelLimitError, match="padded to multiples of 16"):
        codec.encode(synthetic_photo(1, 161, seed=7))  # 16 x 176
    old = coarse(Codec(providers="cpu"), photo)  # 64 x 192 padded: over the limit
    with pytest.raises(PixelLimitError, match="padded to multiples of 64"):
        codec.decode(old)


def test_decode_progress_counts_the_padded_size_the_file_uses(codec):
    """Progress is in pixels through the networks: the padded size of the file's own padding."""
    from nicodec.progress import ENTROPY_DECODING_SHARE

    photo = synthetic_photo(70, 100, seed=9)  # 80x112 padded to 16, 128x128 to 64
    totals = []
    for data in (codec.encode(photo), coarse(codec, photo)):
        calls = []
        codec.decode(data, progress=lambda *a: calls.append(a))
        totals.append(calls[-1][1])
    assert totals == [int(area * (1 + ENTROPY_DECODING_SHARE)) for area in (80 * 112, 128 * 128)]


@pytest.mark.parametrize("downsampling", [2, 66])
def test_a_manifest_whose_downsampling_has_no_quarter_is_refused(tmp_path, downsampling):
    """The latent's stride is a quarter of the downsampling: a manifest without one is refused
    as it loads, where it failed as a division by zero at the first encode."""
    import json
    import shutil

    from nicodec.errors import ModelError
    from nicodec.model import default_model_dir

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "downsampling": downsampling}))
    with pytest.raises(ModelError, match="downsampling must be a multiple of 4"):
        Codec(folder, providers="cpu")
