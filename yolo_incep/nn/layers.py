"""InceptionNeXt layers (arXiv 2303.16900), state-dict compatible with timm's `inception_next`."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import StochasticDepth

# Pixels per MLP tile in the fused CPU path are chosen so that the 4x-wide hidden activation of a tile stays
# within about 1 MiB (one core's L2 here): the un-tiled MLP streams it through memory, 2-6x slower at batch 16.
# Below 4 MiB of hidden activation per image, the plain 1x1 convs win (1.5x at 32 ch x 80x80, batch 1; 1.4x at
# 128 ch x 20x20, batch 16, where per-image tiles are too small): scripts/bench_layers.py.
_TILE_HIDDEN_FLOATS = 1 << 18
_TILE_MIN_HIDDEN_FLOATS = 1 << 20


def _exporting() -> bool:
    """Whether the module is being traced or scripted (ONNX/TorchScript export), where only plain ops belong."""
    jit = torch.jit.is_scripting() or torch.jit.is_tracing()
    return jit or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


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
        if x.device.type == "cpu":  # CPU depthwise convs run 2-20x faster channels-last (scripts/bench_layers.py)
            x_hw, x_w, x_h = (t.contiguous(memory_format=torch.channels_last) for t in (x_hw, x_w, x_h))
        # cat keeps the layout of its first input, the identity slice, so the output has the input's layout
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
    """MetaNeXt block: x + DropPath(gamma * Mlp(BN(mixer(x)))); `fuse()` folds BN and gamma into the MLP."""

    # Layer scale of blocks built without `ls_init_value` (None: no layer scale). A model YAML's `layer_scale:` key
    # replaces it while that YAML's rows are built, as `activation:` replaces Conv.default_act.
    ls_init_default: float | None = 1e-6

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4,
        ls_init_value: float | None = ...,  # ... (not given): ls_init_default
        drop_path: float = 0.0,
        square_kernel_size: int = 3,
        band_kernel_size: int = 11,
        branch_ratio: float = 0.125,
    ):
        super().__init__()
        ls_init_value = self.ls_init_default if ls_init_value is ... else ls_init_value
        self.token_mixer = InceptionDWConv2d(dim, square_kernel_size, band_kernel_size, branch_ratio)
        self.norm = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim))
        self.gamma = nn.Parameter(torch.full((dim,), float(ls_init_value))) if ls_init_value else None
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual MetaNeXt update."""
        shortcut = x
        x = self.mlp(self.norm(self.token_mixer(x)))
        if self.gamma is not None:
            x = x * self.gamma.view(1, -1, 1, 1)
        return self.drop_path(x) + shortcut

    @property
    def fused(self) -> bool:
        """Whether `fuse()` has folded the norm (and layer scale) into the MLP."""
        return isinstance(self.norm, nn.Identity)

    @torch.no_grad()
    def fuse(self) -> MetaNeXtBlock:
        """Fold BatchNorm (running statistics) into mlp.fc1 and gamma into mlp.fc2, in place, and switch to
        `forward_fuse`; idempotent and exact."""
        if self.fused:
            return self
        fc1, fc2, bn = self.mlp.fc1, self.mlp.fc2, self.norm
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # BN(y) = scale * y + shift, per channel
        fc1.bias.add_(fc1.weight.flatten(1) @ (bn.bias - bn.running_mean * scale))
        fc1.weight.mul_(scale.view(1, -1, 1, 1))
        if self.gamma is not None:  # gamma * (W2 h + b2) = (gamma W2) h + gamma b2
            fc2.weight.mul_(self.gamma.view(-1, 1, 1, 1))
            fc2.bias.mul_(self.gamma)
            self.gamma = None
        self.norm = nn.Identity()
        self.forward = self.forward_fuse  # as Ultralytics' fuse() switches Conv to Conv.forward_fuse
        return self

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of a fused block; on CPU, large inputs run the MLP tile by tile to keep it in cache."""
        y = self.token_mixer(x)
        hidden = x.shape[2] * x.shape[3] * self.mlp.fc1.out_channels  # per image
        if x.device.type == "cpu" and x.is_contiguous() and hidden >= _TILE_MIN_HIDDEN_FLOATS and not _exporting():
            return self._tiled_mlp_residual(x, y)
        return x + self.mlp(y)  # also what a trace or export records: plain ops

    def _tiled_mlp_residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x + Mlp(y) for channels-first x, per image and pixel tile so that the hidden activation stays in cache."""
        n, c, h, w = x.shape
        fc1, fc2 = self.mlp.fc1, self.mlp.fc2
        w1, w2, b1 = fc1.weight.flatten(1), fc2.weight.flatten(1), fc1.bias.view(-1, 1)
        out = (x + fc2.bias.view(1, -1, 1, 1)).view(n, c, h * w)
        y = y.reshape(n, c, h * w)
        step = max(1, _TILE_HIDDEN_FLOATS // w1.shape[0])
        for i in range(n):
            for s in range(0, h * w, step):
                hidden = self.mlp.act(torch.addmm(b1, w1, y[i, :, s : s + step]))
                out[i, :, s : s + step].addmm_(w2, hidden)
        return out.view(n, c, h, w)
