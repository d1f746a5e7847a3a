"""Training-time augmentation on batches of face tensors: random affine (shift, scale, small
rotation), horizontal flip, random erasing, and optionally photometric changes (contrast,
brightness, blur, sensor noise) that imitate other cameras; and mixup of faces with their targets.
Uses torch's random state, which checkpoints save, so resumed runs see the same augmentations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, max_shift: float = 0.1, scale: tuple[float, float] = (0.9, 1.1),
            max_degrees: float = 10.0, flip: bool = True, erase_p: float = 0.5,
            photometric: bool = False) -> torch.Tensor:
    """A randomly transformed copy of a batch N x 1 x H x W (float, normalized). Without
    `photometric` it draws exactly the random numbers it always did (runs reproduce)."""
    n = x.shape[0]
    angle = (torch.rand(n) * 2 - 1) * math.radians(max_degrees)
    s = torch.empty(n).uniform_(*scale)
    sign = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    tx, ty = (torch.rand(2, n) * 2 - 1) * max_shift * 2  # grid units span 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos * sign, -sin, tx], 1), torch.stack([sin * sign, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if photometric:
        out = camera_change(out)
    if erase_p > 0:
        out = random_erase(out, erase_p)
    return out


def camera_change(x: torch.Tensor, contrast: tuple[float, float] = (0.6, 1.4), brightness: float = 0.4,
                  blur_p: float = 0.3, noise_p: float = 0.3, noise_std: tuple[float, float] = (0.05, 0.2)) -> torch.Tensor:
    """Each image's contrast and brightness jittered (in normalized units, around its own mean); a
    fraction `blur_p` blurred (Gaussian, sigma 0.5-1.2 px) and `noise_p` given sensor noise."""
    n = x.shape[0]
    c = torch.empty(n, 1, 1, 1).uniform_(*contrast)
    b = (torch.rand(n, 1, 1, 1) * 2 - 1) * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean + b
    blur = torch.rand(n) < blur_p
    sigma = float(torch.empty(1).uniform_(0.5, 1.2))
    if blur.any():
        t = torch.arange(-2, 3, dtype=x.dtype)
        g = torch.exp(-t ** 2 / (2 * sigma ** 2))
        k = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 5, 5)
        x = x.clone()
        x[blur] = F.conv2d(F.pad(x[blur], (2, 2, 2, 2), mode="replicate"), k)
    noisy = (torch.rand(n) < noise_p).view(n, 1, 1, 1)
    std = torch.empty(n, 1, 1, 1).uniform_(*noise_std)
    return x + noisy * std * torch.randn_like(x)


def random_erase(x: torch.Tensor, p: float, area: tuple[float, float] = (0.02, 0.2)) -> torch.Tensor:
    """Blank a random rectangle (filled with noise) in a fraction p of the images."""
    n, _, h, w = x.shape
    hit = torch.rand(n) < p
    a = torch.empty(n).uniform_(*area) * h * w
    ratio = torch.exp(torch.empty(n).uniform_(math.log(0.3), math.log(3.3)))
    eh = torch.sqrt(a * ratio).clamp(1, h).long()
    ew = torch.sqrt(a / ratio).clamp(1, w).long()
    y0 = (torch.rand(n) * (h - eh + 1)).long()
    x0 = (torch.rand(n) * (w - ew + 1)).long()
    noise = torch.randn_like(x)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    mask = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1)) &
            (cols >= x0.view(n, 1, 1)) & (cols < (x0 + ew).view(n, 1, 1)) & hit.view(n, 1, 1))
    return torch.where(mask.unsqueeze(1), noise, x)


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each face of a batch blended with another of the same batch, and its target (class
    probabilities) alike, by one weight lambda ~ Beta(alpha, alpha) (mixup, Zhang et al. 2018): the
    network learns answers between classes (reported to smooth them; on FER+ it cost balanced
    accuracy: experiments/experiments.md, E27)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    other = torch.randperm(x.shape[0]).to(x.device)  # faces and targets are on the training device
    return lam * x + (1 - lam) * x[other], lam * targets + (1 - lam) * targets[other]
