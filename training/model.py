"""The mean-scale hyperprior: the network nicodec trains, exports and ships.

Ballé, Minnen, Singh, Hwang and Johnston, "Variational image compression with a
scale hyperprior" (ICLR 2018), with the Gaussian means of Minnen, Ballé and
Toderici, "Joint autoregressive and hierarchical priors for learned image
compression" (NeurIPS 2018), without the autoregressive context model: every
latent's distribution depends on the hyper-latent alone, so decoding is
parallel.

Data flow (training path; coding replaces the noise by rounding)::

    x ──g_a──> y ──h_a──> z ──Q──> z_hat ──h_s──> (means, scales)
                                     │                   │
                    factorized prior p(z_hat)            │
    y ──Q(y - means) + means──> y_hat <── Gaussian p(y_hat | means, scales)
    y_hat ──g_s──> x_hat

Optionally (``postfilter``, channels; 32 in vr-5e and vr-5f, 0 in the models before them) g_s
ends in a small residual filter at the output's resolution, :class:`PostFilter`, which in a
variable-rate model may also see the quality (``postfilter_quality``; vr-5f).

Loss: ``lmbda * 255**2 * MSE(x, x_hat) + bpp(y_hat) + bpp(z_hat)``.

Variable rate (gain units; Cui, Wang, Zhang, Bai and Gao, "Asymmetric gained deep image
compression with continuous rate adaptation", CVPR 2021): a model with several
``lmbdas`` holds one gain vector and one inverse gain vector over y's channels per
lambda. The latent is multiplied by the gain before h_a and quantization, and by the
inverse gain before g_s, so one network codes at every trained rate; between two
trained rates the vectors are interpolated exponentially (``gains_at``)::

    y = g_a(x) * gain[level]  ...  x_hat = g_s(y_hat * inverse_gain[level])

The hyper-synthesis ``h_s`` upsamples with sub-pixel convolutions (conv then
depth-to-space) instead of transposed convolutions, so it maps onto ONNX ops
that also exist in integer form.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..model import QUALITY_MAX, QUALITY_MIN

SCALE_MIN = 0.11
"""Lower bound of the Gaussian scales, as in CompressAI's scale table."""
SCALE_MAX = 64.0
SCALE_LEVELS = 64
"""The scales that have probability tables: SCALE_LEVELS log-spaced from SCALE_MIN to SCALE_MAX."""


SCALE_TABLE_HEX = (
    "0x1.c28f5c28f5c2ap-4", "0x1.f2780fb7492c2p-4", "0x1.13bc727545601p-3", "0x1.310e43c5a8913p-3",
    "0x1.517e311334418p-3", "0x1.756117b6e6e95p-3", "0x1.9d14db23cd4cfp-3", "0x1.c9015a8a5453bp-3",
    "0x1.f999809a1ec93p-3", "0x1.17ae3814ae625p-2", "0x1.356b686a1e305p-2", "0x1.56521f7d579e6p-2",
    "0x1.7ab8716fa473ap-2", "0x1.a2fd99882ce0fp-2", "0x1.cf8af35ad60dep-2", "0x1.006a8736a59bep-1",
    "0x1.1bae6f95ad6bep-1", "0x1.39d8882440057p-1", "0x1.5b37bc00a34c2p-1", "0x1.80235a8689b81p-1",
    "0x1.a8fbfbbc58ec8p-1", "0x1.d62c7d0a7337ep-1", "0x1.04158c68d84b1p+0", "0x1.1fbd4dde40d0bp+0",
    "0x1.3e55dd79ff39cp+0", "0x1.602f475c1826cp+0", "0x1.85a21a9d0c050p+0", "0x1.af1050ffa300bp+0",
    "0x1.dce64f45aed48p+0", "0x1.07ce0063322b5p+1", "0x1.23db08961ef6fp+1", "0x1.42e3a3c79e437p+1",
    "0x1.6539033bd2486p+1", "0x1.8b34fa5af22e1p+1", "0x1.b53ae9b392c70p+1", "0x1.e3b8c2fa1dd7dp+1",
    "0x1.0b941456d8db8p+2", "0x1.2807d6297bc1dp+2", "0x1.47821742c1bf7p+2", "0x1.6a55323c6d578p+2",
    "0x1.90dc4372152e8p+2", "0x1.bb7c17600cc96p+2", "0x1.eaa4325afef09p+2", "0x1.0f67fa291748ap+3",
    "0x1.2c43edcbd8226p+3", "0x1.4c3174fd8c856p+3", "0x1.6f8417ee75412p+3", "0x1.969840a22e8a0p+3",
    "0x1.c1d42cb7886e3p+3", "0x1.f1a8f8e5e3255p+3", "0x1.1349e475f1637p+4", "0x1.308f877adbf3ap+4",
    "0x1.50f1fae9c71fap+4", "0x1.74c5f8d9e38d1p+4", "0x1.9c693dbcb49d8p+4", "0x1.c8437d9b555f6p+4",
    "0x1.f8c77367677e3p+4", "0x1.173a0692c1471p+5", "0x1.34eadc013a479p+5", "0x1.55c3e7dc12cf1p+5",
    "0x1.7a1b1a81a977ap+5", "0x1.a24f87a8c512cp+5", "0x1.ceca5f1ff097dp+5", "0x1.ffffffffffffdp+5",
)
"""The scales of :func:`scale_table` as float64 numbers: ``exp(linspace(log SCALE_MIN, log SCALE_MAX,
SCALE_LEVELS))`` as torch computed it for every model shipped so far (on Xeons with AVX-512).
Kept as numbers because torch's vectorised ``exp`` and ``linspace`` differ in the last bit
between processors (an AMD EPYC gave other values at indices 9 and 22, 2026-12-05): the
tables of a model exported there differed from the same checkpoint's exported on a Xeon, and
``nicodec-export --decodes-files-of`` refused the model a checkpoint came from. ``tests/test_integer.py`` checks them against the formula."""


def scale_table() -> torch.Tensor:
    """The Gaussian scales that have tables (float64), smallest first: the same bits on every machine."""
    return torch.tensor([float.fromhex(h) for h in SCALE_TABLE_HEX], dtype=torch.float64)


def float_scale_index(scales: torch.Tensor) -> torch.Tensor:
    """The table a float scale is coded with: the first table scale at least as large (float tensor).

    Used by models whose entropy parameters are float; the integer path has its own lookup table.
    """
    log_step = (math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1)
    index = torch.ceil((torch.log(scales.clamp_min(SCALE_MIN)) - math.log(SCALE_MIN)) / log_step - 1e-4)
    return index.clamp(0, SCALE_LEVELS - 1)


@dataclass
class ModelConfig:
    """Architecture and rate-distortion trade-off; saved in every checkpoint."""

    N: int = 64  # channels inside g_a and g_s
    M: int = 128  # channels of the latent y
    Nh: int = 64  # channels inside h_a/h_s and of the hyper-latent z
    lmbda: float = 0.0130  # weight of 255**2 * MSE against bits per pixel (single-rate models)
    integer_entropy: bool = False  # h_s computed in integer arithmetic (nicodec.training.integer)
    lmbdas: tuple[float, ...] = ()  # variable rate: one gain pair per lambda, lowest rate first
    postfilter: int = 0  # channels of a residual filter ending g_s (PostFilter); 0: none
    postfilter_quality: bool = False  # the post-filter also sees the quality (a 13th input plane)

    def __post_init__(self):
        self.lmbdas = tuple(float(v) for v in self.lmbdas)
        if list(self.lmbdas) != sorted(self.lmbdas) or len(set(self.lmbdas)) != len(self.lmbdas):
            raise ValueError("lmbdas must be increasing")
        if len(self.lmbdas) == 1:
            raise ValueError("a variable-rate model needs at least two lmbdas")
        if isinstance(self.postfilter, bool) or not isinstance(self.postfilter, int) or self.postfilter < 0:
            raise ValueError(f"postfilter must be a whole number of channels, 0 or more, not {self.postfilter!r}")
        if self.postfilter_quality and not (self.postfilter and self.lmbdas):
            raise ValueError("postfilter_quality needs a post-filter (postfilter) in a variable-rate model (lmbdas)")

    @property
    def levels(self) -> int:
        """Trained rate levels: 0 for a single-rate model."""
        return len(self.lmbdas)

    @property
    def downsampling(self) -> int:
        """Image sizes must be a multiple of this (g_a: 16, h_a: 4 more)."""
        return 64

    def to_dict(self) -> dict:
        return asdict(self)


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still pushes values up from below the bound (the rule of
    tensorflow-compression's lower bound: a gradient passes where x is above the bound, or
    where following it would raise x)."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through, None


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016), or its inverse.

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j**2)``; the inverse multiplies.
    beta and gamma are stored as square roots kept above a small bound.
    """

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta_sqrt = nn.Parameter(torch.ones(channels))
        self.gamma_sqrt = nn.Parameter(torch.sqrt(0.1 * torch.eye(channels) + 1e-6))

    def params(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective (beta, gamma as a 1x1 conv weight)."""
        beta = LowerBound.apply(self.beta_sqrt, 1e-3) ** 2
        gamma = LowerBound.apply(self.gamma_sqrt, 0.0) ** 2
        return beta, gamma[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.params()
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def subpixel_up(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    """Upsample by 2: a convolution to 4x the channels, then depth-to-space."""
    return nn.Sequential(conv(cin, cout * 4, k, stride=1), nn.PixelShuffle(2))


class PostFilter(nn.Module):
    """``x + f(x)``, the last layer of g_s when ``ModelConfig.postfilter`` is set: ``f`` is three
    3x3 convolutions with ReLUs between, on the picture folded to half its resolution (space to
    depth, 12 planes), the last one zero-initialised, so a filter added to a trained model starts
    from its pixels. It adds the full-resolution capacity g_s's linear last layer lacks: on
    frozen vr-5d latents, 32 channels (4,032 multiply-adds a pixel, g_s some 42,000) trained 25
    minutes on 2 CPU cores gained 1.5% BD-rate on Kodak (training/LOG.md, the notes on vr-5e).

    ``quality_plane`` (``ModelConfig.postfilter_quality``) adds a 13th input plane, the quality
    over 100, which ``forward`` then needs: the filter then knows how much the synthesis's
    picture lost, so it no longer smooths the top qualities as it does the bottom ones (on
    vr-5d's latents: Kodak -4.0% BD-rate against -1.5% without it; training/LOG.md)."""

    def __init__(self, channels: int, quality_plane: bool = False):
        super().__init__()
        self.quality_plane = quality_plane
        self.body = nn.Sequential(
            nn.Conv2d(12 + quality_plane, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 12, 3, padding=1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor, quality: torch.Tensor | float | None = None) -> torch.Tensor:
        return x + F.pixel_shuffle(self.body(self.folded(x, quality)), 2)

    def folded(self, x: torch.Tensor, quality: torch.Tensor | float | None = None) -> torch.Tensor:
        """The body's input: ``x`` space to depth, and the quality plane if the filter takes it
        (``quality``: each picture's, (B,) or (B, 1, 1, 1), or one for all)."""
        folded = F.pixel_unshuffle(x, 2)
        if self.quality_plane:
            if quality is None:
                raise ValueError("this post-filter takes the quality too")
            quality = quality if isinstance(quality, torch.Tensor) else torch.tensor(quality)  # a graph's input stays one
            plane = torch.zeros_like(folded[:, :1]) + (quality.to(x) / 100).reshape(-1, 1, 1, 1)
            folded = torch.cat([folded, plane], dim=1)
        return folded

    def macs_per_pixel(self) -> float:
        """Multiply-adds per pixel of the picture (the convolutions run at a quarter of its pixels)."""
        return sum(m.in_channels * m.out_channels * 9 for m in self.body if isinstance(m, nn.Conv2d)) / 4


class Synthesis(nn.Sequential):
    """g_s: its layers in turn, the quality (1 to 100, as the file header records it) passed to a
    :class:`PostFilter` that takes it; a model without one ignores it."""

    def forward(self, x: torch.Tensor, quality: torch.Tensor | float | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, quality) if isinstance(layer, PostFilter) else layer(x)
        return x

    @property
    def takes_quality(self) -> bool:
        return any(isinstance(layer, PostFilter) and layer.quality_plane for layer in self)


class FactorizedPrior(nn.Module):
    """Ballé et al. 2018's non-parametric, per-channel density for z (appendix 6.1).

    The cumulative is a small monotone network per channel: softplus-positive
    matrices with tanh-shaped non-linearities. Likelihoods are differences of
    the cumulative at ``z +- 0.5``, evaluated on the side of the median where
    the sigmoid is far from saturation. The initialisation (each matrix at the
    softplus inverse of ``1 / (scale * width)``, so that the network starts near a
    line of slope ``1 / init_scale``) and that choice of side are the conventions of
    the paper's authors' library, tensorflow-compression (docs/how-it-works.md,
    References).
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """Logit of the cumulative at ``v`` of shape (C, 1, n)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(m), v) + b
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Probability mass of the unit bin around each value of z (B, C, H, W)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1).float()
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        # Above the median (the bin's logits summing above 0) the upper tail's difference,
        # sigmoid(-lower) - sigmoid(-upper), is the accurate one; below it, the lower tail's.
        above = (lower + upper) > 0
        p = torch.where(above, torch.sigmoid(-lower) - torch.sigmoid(-upper),
                        torch.sigmoid(upper) - torch.sigmoid(lower))
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def cdf(self, v: torch.Tensor) -> torch.Tensor:
        """Cumulative at points v of shape (C, n)."""
        return torch.sigmoid(self.logits_cdf(v[:, None, :]))[:, 0, :]


def gaussian_likelihood(y_hat: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Mass of the unit bin around ``y_hat`` under N(means, scales**2)."""
    scales = LowerBound.apply(scales, SCALE_MIN)
    v = torch.abs(y_hat - means)
    # Both tails taken on the negative side, where the normal CDF is accurate. torch.special.ndtr
    # rather than torch.distributions.Normal, whose argument check waits for the GPU at every call.
    return torch.special.ndtr((0.5 - v) / scales) - torch.special.ndtr((-0.5 - v) / scales)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Rounding with the gradient of the identity."""
    return x + (torch.round(x) - x).detach()


class MeanScaleHyperprior(nn.Module):
    """The codec's network; ``forward`` trains, export turns the parts into graphs."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        N, M, Nh = config.N, config.M, config.Nh
        self.g_a = nn.Sequential(
            conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M),
        )
        self.g_s = Synthesis(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
            *([PostFilter(config.postfilter, config.postfilter_quality)] if config.postfilter else []),
        )
        self.h_a = nn.Sequential(
            conv(M, Nh, 3, stride=1), nn.ReLU(), conv(Nh, Nh), nn.ReLU(), conv(Nh, Nh),
        )
        self.h_s = nn.Sequential(
            subpixel_up(Nh, Nh), nn.ReLU(), subpixel_up(Nh, Nh * 3 // 2), nn.ReLU(),
            conv(Nh * 3 // 2, 2 * M, 3, stride=1),
        )
        self.z_prior = FactorizedPrior(Nh)
        if config.levels:
            # Initialised for a quantization step proportional to lambda**-0.5 (the high-rate
            # optimum of MSE against rate), relative to the middle lambda.
            ref = math.log(config.lmbdas[len(config.lmbdas) // 2])
            init = torch.tensor([0.5 * (math.log(v) - ref) for v in config.lmbdas])[:, None].repeat(1, M)
            self.log_gain = nn.Parameter(init.clone())
            self.log_inverse_gain = nn.Parameter(-init.clone())
        if config.integer_entropy:
            # Activation scales of h_s's two hidden layers, set by integer.calibrate().
            self.register_buffer("hs_act_scale", torch.full((2,), 1 / 255, dtype=torch.float64))
        # The integer path's scale table and lookup table, derived data kept out of checkpoints:
        # as buffers they move to the GPU once, with the model.
        from .integer import scale_lut

        table = scale_table()
        self.register_buffer("table_scales", table, persistent=False)
        self.register_buffer("table_lut", torch.from_numpy(scale_lut(table.numpy()).astype("int64")), persistent=False)

    def entropy_parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales of y from the quantized hyper-latent.

        With ``integer_entropy`` these are the integer graph's exact values (means in
        fixed point, scales from the table), with straight-through gradients.
        """
        if self.config.integer_entropy:
            from .integer import integer_entropy_parameters

            out = integer_entropy_parameters(self.h_s, self.hs_act_scale, z_hat, self.table_scales, self.table_lut)
            return out["means"].to(z_hat.dtype if z_hat.is_floating_point() else torch.float32), out["scales"].float()
        means, scales = self.h_s(z_hat).chunk(2, dim=1)
        return means, scales

    def gains_at(self, position: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain vectors (…, M) at continuous level positions in [0, levels - 1].

        Exponential interpolation between the two neighbouring trained levels (Cui et al.):
        ``gain = gain[l]**(1 - f) * gain[l + 1]**f`` with ``position = l + f``.
        """
        position = torch.as_tensor(position, dtype=torch.float32, device=self.log_gain.device)
        position = position.clamp(0, self.config.levels - 1)
        low = position.floor().long().clamp(max=self.config.levels - 2)
        frac = (position - low)[..., None]
        gain = torch.exp(self.log_gain[low] * (1 - frac) + self.log_gain[low + 1] * frac)
        inverse = torch.exp(self.log_inverse_gain[low] * (1 - frac) + self.log_inverse_gain[low + 1] * frac)
        return gain, inverse

    def level_quality(self, position: torch.Tensor | float) -> torch.Tensor:
        """The quality (1 to 100) of level positions in [0, levels - 1]: the runtime's
        ``quality_position`` inverted (``nicodec.model``)."""
        position = torch.as_tensor(position, dtype=torch.float32, device=self.log_gain.device)
        return QUALITY_MIN + (QUALITY_MAX - QUALITY_MIN) * position / (self.config.levels - 1)

    def forward(self, x: torch.Tensor, level: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training pass on images in [0, 1].

        Rates use additive uniform noise (Ballé et al. 2017); the synthesis and
        h_s see rounded values through a straight-through estimator, as at
        coding time (the "mixed" quantization of Minnen and Singh, ICIP 2020).

        Args:
            x: images (B, 3, H, W).
            level: for a variable-rate model, each image's level position (B,), integer
                (a trained lambda) or fractional (interpolated gains).

        Returns:
            ``x_hat``, and the likelihoods of y and z.
        """
        if self.config.levels and level is None:
            raise ValueError("a variable-rate model needs the level of each image")
        hidden = self.g_a[:-1](x)
        # The latent side (g_a's last layer, h_a, h_s) works at 1/16 of the resolution and runs
        # in float32 even under autocast: bfloat16 would round y to steps of 0.25 to 0.5 at the
        # magnitudes it reaches, a noise the codec's float32 graphs never add.
        with torch.autocast(x.device.type, enabled=False):
            y = self.g_a[-1](hidden.float())
            if self.config.levels:
                gain, inverse_gain = self.gains_at(level)
                y = y * gain[:, :, None, None]
            z = self.h_a(y)
            z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
            z_likelihood = self.z_prior.likelihood(z_noisy)
            z_hat = ste_round(z)
            means, scales = self.entropy_parameters(z_hat)
            means, scales = means.float(), scales.float()
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_likelihood = gaussian_likelihood(y_noisy, means, scales)
            y_hat = ste_round(y - means) + means
            if self.config.levels:
                y_hat = y_hat * inverse_gain[:, :, None, None]
        x_hat = self.g_s(y_hat, self.level_quality(level) if self.config.postfilter_quality else None)
        return {"x_hat": x_hat, "y_likelihood": y_likelihood, "z_likelihood": z_likelihood}


@torch.no_grad()
def remap_levels(model: MeanScaleHyperprior, lmbdas: tuple[float, ...]) -> MeanScaleHyperprior:
    """A copy of a variable-rate model with other trained lambdas, its gains carried over.

    Each new level's log gain and log inverse gain (per channel) are read off the old levels
    as a piecewise-linear function of log lambda, extended linearly beyond the end levels:
    the trained gains lie close to such a line (their mean rises by about 0.47 per unit of
    log lambda in nicodec-mshp-vr-1; 0.5 is the high-rate optimum). A lambda the model was
    trained at keeps its vectors exactly. Every other parameter and buffer is copied.
    """
    old = model.config
    if not old.levels:
        raise ValueError("only a variable-rate model has levels to remap")
    config = ModelConfig(**{**old.to_dict(), "lmbdas": tuple(lmbdas)})
    if not config.levels:
        raise ValueError("a variable-rate model needs at least two lmbdas")
    new = MeanScaleHyperprior(config).to(model.log_gain.device)
    state = {k: v for k, v in model.state_dict().items() if k not in ("log_gain", "log_inverse_gain")}
    known = [math.log(v) for v in old.lmbdas]
    for name in ("log_gain", "log_inverse_gain"):
        rows = getattr(model, name).double()
        out = []
        for lmbda in config.lmbdas:
            if lmbda in old.lmbdas:
                out.append(rows[old.lmbdas.index(lmbda)])
                continue
            x = math.log(lmbda)
            right = min(max(bisect.bisect(known, x), 1), old.levels - 1)
            left = right - 1
            t = (x - known[left]) / (known[right] - known[left])
            out.append(rows[left] + (rows[right] - rows[left]) * t)
        getattr(new, name).copy_(torch.stack(out).to(getattr(new, name).dtype))
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"log_gain", "log_inverse_gain"}:
        raise ValueError(f"the models differ beyond their levels: missing {missing}, unexpected {unexpected}")
    return new


def rate_distortion_loss(out: dict[str, torch.Tensor], x: torch.Tensor, lmbda: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """``lmbda * 255**2 * MSE + bpp``, with its parts for logging.

    ``lmbda`` is one number, or one per image (B,) for a variable-rate batch.
    """
    num_pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bits = sum(
        torch.log2(out[k].clamp_min(1e-9)).sum() for k in ("y_likelihood", "z_likelihood")
    )
    bpp = -bits / num_pixels
    per_image = (out["x_hat"].float() - x.float()).pow(2).mean(dim=(1, 2, 3))
    mse = per_image.mean()
    loss = (lmbda * 255**2 * per_image).mean() + bpp  # a Python number is not copied to the device
    psnr = 10 * torch.log10(1.0 / mse.detach().clamp_min(1e-10))
    return {"loss": loss, "bpp": bpp.detach(), "mse": mse.detach(), "psnr": psnr}
