"""Autoencoders over the EVENT_TENSOR, and the scoring head exported with them.

One home for the model code: centralized training, federated clients and ONNX export all build
their modules here (:func:`build_autoencoder`), so a version trained anywhere serves anywhere.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
from torch import nn

from modelling.config import ModelConfig


class MLPAutoencoder(nn.Module):
    """Dense autoencoder: 256 -> hidden... -> bottleneck -> ...hidden -> 256 (linear output)."""

    def __init__(self, width: int, hidden: list[int], dropout: float = 0.0) -> None:
        super().__init__()
        dims = [width, *hidden]
        enc: list[nn.Module] = []
        for a, b in pairwise(dims):
            enc += [nn.Linear(a, b), nn.GELU()]
            if dropout:
                enc.append(nn.Dropout(dropout))
        back = list(reversed(dims))
        dec: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(back)):
            dec.append(nn.Linear(a, b))
            if i < len(back) - 2:
                dec.append(nn.GELU())
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class CNNAutoencoder(nn.Module):
    """1D-CNN autoencoder: the tensor as a 1-channel sequence; strided convs down, a dense
    bottleneck, transposed convs up. Suits layouts where neighbouring slots are related."""

    def __init__(self, width: int, channels: list[int], latent: int) -> None:
        super().__init__()
        chans = [1, *channels]
        down: list[nn.Module] = []
        for a, b in pairwise(chans):
            down += [nn.Conv1d(a, b, kernel_size=4, stride=2, padding=1), nn.GELU()]
        self.down = nn.Sequential(*down)
        self.reduced = width // (2 ** len(channels))
        if self.reduced * 2 ** len(channels) != width:
            raise ValueError(f"width {width} must be divisible by 2**{len(channels)}")
        flat = chans[-1] * self.reduced
        self.to_latent = nn.Sequential(nn.Flatten(), nn.Linear(flat, latent), nn.GELU())
        self.from_latent = nn.Sequential(nn.Linear(latent, flat), nn.GELU())
        up: list[nn.Module] = []
        rev = list(reversed(chans))
        for i, (a, b) in enumerate(pairwise(rev)):
            up.append(nn.ConvTranspose1d(a, b, kernel_size=4, stride=2, padding=1))
            if i < len(rev) - 2:
                up.append(nn.GELU())
        self.up = nn.Sequential(*up)
        self.channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.to_latent(self.down(x.unsqueeze(1)))
        h = self.from_latent(h).view(-1, self.channels, self.reduced)
        return self.up(h).squeeze(1)


def build_autoencoder(config: ModelConfig, width: int = 256, seed: int | None = None) -> nn.Module:
    """The single factory every trainer and exporter uses; ``seed`` fixes the initial weights
    (federated runs need every party to start from the same ones)."""
    if seed is not None:
        torch.manual_seed(seed)
    if config.kind == "mlp":
        return MLPAutoencoder(width, config.hidden, config.dropout)
    return CNNAutoencoder(width, config.channels, config.latent)


class ScoredAutoencoder(nn.Module):
    """Autoencoder + calibrated scoring head: what ``dfp_autoencoder`` serves.

    Baking the calibration (per-field error mean/std, threshold) and the version number into the
    exported graph makes each model version self-contained: the ensemble can never pair a model
    with another version's threshold.
    """

    membership: torch.Tensor
    field_mean: torch.Tensor
    field_std: torch.Tensor
    threshold: torch.Tensor
    version: torch.Tensor

    def __init__(
        self,
        autoencoder: nn.Module,
        field_index: list[int],
        n_fields: int,
        field_mean: np.ndarray,
        field_std: np.ndarray,
        threshold: float,
        version: int,
    ) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        member = np.zeros((len(field_index), n_fields), dtype=np.float32)
        for slot, f in enumerate(field_index):
            if f >= 0:
                member[slot, f] = 1.0
        member /= np.maximum(member.sum(axis=0, keepdims=True), 1.0)  # mean over a field's slots
        self.register_buffer("membership", torch.from_numpy(member))
        self.register_buffer("field_mean", torch.as_tensor(field_mean, dtype=torch.float32))
        self.register_buffer("field_std", torch.as_tensor(field_std, dtype=torch.float32))
        self.register_buffer("threshold", torch.tensor([threshold], dtype=torch.float32))
        self.register_buffer("version", torch.tensor([version], dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        err = (x - self.autoencoder(x)) ** 2
        score = err.mean(dim=1, keepdim=True)
        field_z = (err @ self.membership - self.field_mean) / self.field_std
        ones = torch.ones_like(score)
        return score, field_z, ones * self.threshold, ones.to(torch.int64) * self.version


def field_errors(
    autoencoder: nn.Module, x: torch.Tensor, field_index: list[int], n_fields: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(score [N], per-field mean squared error [N, F]) — the uncalibrated head, for calibration."""
    head = ScoredAutoencoder(
        autoencoder, field_index, n_fields, np.zeros(n_fields), np.ones(n_fields), 0.0, 0
    )
    with torch.no_grad():
        score, field_err, _, _ = head(x)
    return score.squeeze(1), field_err
