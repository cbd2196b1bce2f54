"""InceptionNeXt layers against timm's reference implementation (same weights, same outputs)."""

import pytest
import torch
from torch import nn

from helpers import randomize_norms, randomize_params
from yolo_incep.nn import C2fIncep, InceptionDWConv2d, MetaNeXtBlock

timm_incep = pytest.importorskip("timm.models.inception_next", reason="timm is the reference implementation")


def _randomize(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial values for every parameter and BN statistic, so parity is not won by near-zero gamma."""
    randomize_params(module, seed)
    randomize_norms(module, seed)


@pytest.mark.parametrize(
    "dim,kwargs",
    [(8, {}), (40, {}), (96, {}), (100, {}), (40, {"band_kernel_size": 9, "branch_ratio": 0.25}), (64, {"square_kernel_size": 5})],
)
def test_inception_dwconv_matches_timm(dim, kwargs):
    ref = timm_incep.InceptionDWConv2d(dim, **kwargs)
    _randomize(ref)
    ours = InceptionDWConv2d(dim, **kwargs)
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    assert ours.split_indexes == tuple(ref.split_indexes)
    x = torch.randn(2, dim, 17, 23)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_split_is_the_official_one_for_every_dim_from_8():
    for dim in range(8, 1025):
        gc = int(dim * 0.125)
        assert InceptionDWConv2d(dim).split_indexes == (dim - 3 * gc, gc, gc, gc), dim


@pytest.mark.parametrize("dim", [8, 48, 160])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_metanext_block_matches_timm(dim, mode):
    ref = timm_incep.MetaNeXtBlock(dim, mlp_ratio=4)
    _randomize(ref, seed=dim)
    ours = MetaNeXtBlock(dim, mlp_ratio=4)
    assert set(ours.state_dict()) == set(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    getattr(ours, mode)(), getattr(ref, mode)()
    x = torch.randn(2, dim, 12, 20)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    if mode == "train":  # running statistics must move identically too
        torch.testing.assert_close(ours.norm.running_mean, ref.norm.running_mean)


def test_timm_atto_stage_state_dict_loads_into_blocks():
    ref = timm_incep.inception_next_atto(pretrained=False)
    block_sd = {k.removeprefix("stages.2.blocks.0."): v for k, v in ref.state_dict().items() if k.startswith("stages.2.blocks.0.")}
    ours = MetaNeXtBlock(160, band_kernel_size=9, branch_ratio=0.25)
    missing, unexpected = ours.load_state_dict(block_sd, strict=True)
    assert not missing and not unexpected


def test_every_dim_from_1_to_1024_runs_forward_and_backward():
    for dim in range(1, 1025):
        conv = InceptionDWConv2d(dim)
        x = torch.randn(1, dim, 6, 6, requires_grad=True)
        y = conv(x)
        assert y.shape == x.shape
        y.sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape
    for dim in (1, 2, 3, 5, 7, 8, 9, 15, 33, 257, 1024):  # whole blocks, including the dims the official code rejects
        block = MetaNeXtBlock(dim)
        x = torch.randn(2, dim, 5, 5, requires_grad=True)
        block(x).sum().backward()
        assert x.grad.shape == x.shape
        assert all(p.grad is not None for p in block.parameters())


def test_small_dims_are_identity_mixers():
    x = torch.randn(1, 7, 4, 4)
    assert torch.equal(InceptionDWConv2d(7)(x), x)  # int(7 / 8) == 0 channels per branch
    assert len(list(InceptionDWConv2d(7).parameters())) == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [({"dim": 0}, "dim"), ({"dim": 16, "branch_ratio": 0.5}, "branch_ratio"), ({"dim": 16, "band_kernel_size": 10}, "band_kernel_size"),
     ({"dim": 16, "square_kernel_size": 0}, "square_kernel_size")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InceptionDWConv2d(**kwargs)


def test_layer_scale_default_and_drop_path_only_in_training():
    assert torch.equal(MetaNeXtBlock(32).gamma, torch.full((32,), MetaNeXtBlock.ls_init_default))  # the one default
    assert MetaNeXtBlock(32, ls_init_value=None).gamma is None
    # a residual branch of order 1 (gamma 1, randomized weights), so that dropping it or not shows in the output
    block, plain = MetaNeXtBlock(32, ls_init_value=1.0, drop_path=0.5), MetaNeXtBlock(32, ls_init_value=1.0)
    _randomize(block)
    plain.load_state_dict(block.state_dict())
    x = torch.randn(16, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block.eval()(x), plain.eval()(x))  # eval: every sample keeps its branch
        torch.manual_seed(0)
        y = block.train()(x)
        plain_y = plain.train()(x)  # train-mode BN as the block's: the branch without drop path
    branch = plain_y - x
    # train: per sample, the branch is dropped (identity) or kept and scaled by 1 / (1 - 0.5), as timm's DropPath
    dropped = [torch.allclose(y[i], x[i], atol=1e-6) for i in range(16)]
    for i in range(16):
        torch.testing.assert_close(y[i], x[i] if dropped[i] else x[i] + 2 * branch[i], atol=1e-5, rtol=1e-5)
    assert 0 < sum(dropped) < 16


@pytest.mark.parametrize("n", [1, 3])
def test_c2f_incep_shapes_and_parity_with_c2f_interface(n):
    from ultralytics.nn.modules import C2f

    block = C2fIncep(48, 64, n=n, shortcut=True)
    stock = C2f(48, 64, n=n, shortcut=True)
    assert isinstance(block, C2f) and len(block.m) == n and all(isinstance(m, MetaNeXtBlock) for m in block.m)
    assert block.cv2.conv.in_channels == stock.cv2.conv.in_channels
    x = torch.randn(2, 48, 20, 20)
    assert block(x).shape == (2, 64, 20, 20)
    block.eval()
    torch.testing.assert_close(block.forward_split(x), block(x))  # the path Ultralytics' exporter switches to
