"""The export's parity check: a test image coded by the exported folder through the runtime, and
by the torch model; the integers must agree exactly (the integer entropy graph's) or nearly (the
latent symbols'), and the decoded pixels to a PSNR of at least ``PIXEL_TOLERANCE_DB``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nicodec.model import quality_position
from nicodec.training.integer import MEAN_BITS
from nicodec.training.model import MeanScaleHyperprior

from .graphs import EntropyParameters, Encoder

PIXEL_TOLERANCE_DB = 45.0
"""Decoded pixels from onnxruntime and from torch must agree to this PSNR at least."""


SYMBOL_MISMATCH_TOLERANCE = 1e-4
"""Fraction of latent symbols that may round the other way between torch and onnxruntime."""


def parity_image(height: int = 230, width: int = 300, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like test image (gradients, edges and mild noise), uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([
        128 + 90 * np.sin(xx / 23.0) * np.cos(yy / 31.0),
        128 + 80 * np.cos((xx + yy) / 40.0),
        100 + 100 * (xx > width / 2) + 20 * np.sin(yy / 9.0),
    ], axis=2)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@torch.no_grad()
def check_parity(model: MeanScaleHyperprior, folder: Path, image: np.ndarray, quality: float | None = None) -> dict:
    """Code ``image`` with the exported folder (at ``quality`` for a variable-rate model) and compare with torch.

    Returns:
        Counts of differing integers and the PSNR between the two decodes.

    Raises:
        RuntimeError: when the integers or pixels disagree beyond the tolerances.
    """
    from nicodec import format as nicformat
    from nicodec.codec import Codec

    codec = Codec(folder, providers="cpu", rdo=False)  # torch rounds to nearest
    data = codec.encode(image, quality=quality)
    header, z_hat, symbols, mean_q = codec.decode_symbols(data)
    pixels = codec.decode(data, as_array=True)

    # Padded as the file says (to 16 where that differs from 64: the parity image's sides are
    # off the 64-pixel grid, so z's last row and column see part of a block, and the entropy
    # parameters are cut to the latent's size, as in every such file).
    h, w = image.shape[:2]
    padded = codec._pad(image, nicformat.padding(header.flags, model.config.downsampling))
    x = torch.from_numpy(padded).permute(2, 0, 1)[None]
    gain = inverse_gain = torch.ones(1, model.config.M, 1, 1)
    if quality is not None:
        position = quality_position(quality, model.config.levels)
        gain, inverse_gain = (g.reshape(1, -1, 1, 1) for g in model.gains_at(position))
    y, z = Encoder(model)(x, gain)
    torch_z_hat = torch.round(z).to(torch.int32)
    rows, cols = symbols.shape[2:]
    index, torch_mean_q = (t[:, :, :rows, :cols] for t in EntropyParameters(model)(torch.from_numpy(z_hat)))
    onnx_index = codec._session("entropy_parameters").run(None, {"z_hat": z_hat})[0][:, :, :rows, :cols]
    torch_symbols = torch.round(y - torch.from_numpy(mean_q).float() / 2**MEAN_BITS).to(torch.int32)
    # Against the trained synthesis itself, not Decoder's rewritten form (SubpixelConvTranspose).
    y_hat = (torch.from_numpy(symbols).float() + torch.from_numpy(mean_q).float() / 2**MEAN_BITS) * inverse_gain
    torch_pixels = torch.round(model.g_s(y_hat, header.quality).clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    torch_pixels = torch_pixels[0, :, :h, :w].permute(1, 2, 0).numpy()

    half = Codec(folder, providers="cpu", precision="fp16").decode(data, as_array=True)
    half_mse = np.mean((pixels.astype(np.float64) - half.astype(np.float64)) ** 2)
    mse = np.mean((pixels.astype(np.float64) - torch_pixels.astype(np.float64)) ** 2)
    report = {
        "image": f"{w}x{h} synthetic",
        "quality": quality,
        "bytes": len(data),
        "z_symbols_differ": int((torch_z_hat.numpy() != z_hat).sum()),
        "scale_index_differ": int((index.numpy() != onnx_index).sum()),
        "mean_q_differ": int((torch_mean_q.numpy() != mean_q).sum()),
        "y_symbols_differ": int((torch_symbols.numpy() != symbols).sum()),
        "y_symbols": int(symbols.size),
        # null where the pixels are identical: JSON has no infinity (a manifest must parse anywhere).
        "pixel_psnr_db": round(float(10 * np.log10(255**2 / mse)), 2) if mse > 0 else None,
        "fp16_pixel_psnr_db": round(float(10 * np.log10(255**2 / half_mse)), 2) if half_mse > 0 else None,
    }
    if model.config.integer_entropy and (report["scale_index_differ"] or report["mean_q_differ"]):
        raise RuntimeError(f"the integer entropy graph differs from its torch definition: {report}")
    if report["y_symbols_differ"] > SYMBOL_MISMATCH_TOLERANCE * symbols.size or report["z_symbols_differ"]:
        raise RuntimeError(f"symbols differ between torch and onnxruntime: {report}")
    if any(report[key] is not None and report[key] < PIXEL_TOLERANCE_DB for key in ("pixel_psnr_db", "fp16_pixel_psnr_db")):
        raise RuntimeError(f"pixels differ between torch and onnxruntime: {report}")
    return report


PARITY_QUALITIES = (1.0, 37.5, 75.0, 100.0)
"""The qualities a variable-rate model's parity is checked at (the ends, and between levels)."""
