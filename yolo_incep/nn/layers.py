"""InceptionNeXt layers (arXiv 2303.16900), state-dict compatible with timm's `inception_next`."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth


class InceptionDWConv2d(nn.Module):
    """Inception depthwise conv: identity | 3x3 | 1xk | kx1 depthwise branches on a channel split, identity first."""

    def __init__(self, dim: int, square_kernel_size: int = 3, band_kernel_size: int = 11, branch_ratio: float = 0.125):
        super().__init__()
        if dim < 1:
            raise ValueError(f"InceptionDWConv2d: dim must be >= 1, got {dim}")
        if not 0 < branch_ratio <= 1 / 3:
            raise ValueError(f"InceptionDWConv2d: branch_ratio must be in (0, 1/3], got {branch_ratio}")
        for name, k in (("square_kernel_size", square_kernel_size), ("band_kernel_size", band_kernel_size)):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"InceptionDWConv2d: {name} must be odd and >= 1 for 'same' padding, got {k}")
        gc = int(dim * branch_ratio)  # the official split; 0 for dim < 1/branch_ratio, where the mixer is identity
        self.split_indexes = (dim - 3 * gc, gc, gc, gc)
        if gc:
            s, b = square_kernel_size // 2, band_kernel_size // 2
            self.dwconv_hw = nn.Conv2d(gc, gc, square_kernel_size, padding=s, groups=gc)
            self.dwconv_w = nn.Conv2d(gc, gc, (1, band_kernel_size), padding=(0, b), groups=gc)
            self.dwconv_h = nn.Conv2d(gc, gc, (band_kernel_size, 1), padding=(b, 0), groups=gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the three branch groups and pass the identity group through."""
        if not self.split_indexes[1]:
            return x
        x_id, x_hw, x_w, x_h = torch.split(x, self.split_indexes, dim=1)
        return torch.cat((x_id, self.dwconv_hw(x_hw), self.dwconv_w(x_w), self.dwconv_h(x_h)), dim=1)


class ConvMlp(nn.Module):
    """Channel MLP as two 1x1 convs with GELU between them."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand, activate, project back."""
        return self.fc2(self.act(self.fc1(x)))


class MetaNeXtBlock(nn.Module):
    """MetaNeXt block: x + DropPath(gamma * Mlp(BN(mixer(x))))."""

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4,
        ls_init_value: float | None = 1e-6,
        drop_path: float = 0.0,
        square_kernel_size: int = 3,
        band_kernel_size: int = 11,
        branch_ratio: float = 0.125,
    ):
        super().__init__()
        self.token_mixer = InceptionDWConv2d(dim, square_kernel_size, band_kernel_size, branch_ratio)
        self.norm = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim))
        self.gamma = nn.Parameter(torch.full((dim,), float(ls_init_value))) if ls_init_value else None
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual MetaNeXt update."""
        y = self.mlp(self.norm(self.token_mixer(x)))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)
