"""The network: shapes and the 512 stride, Table 1 variants, the graph buffer, save/load, counts."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest
import torch

from ecg_gcn import nets
from ecg_gcn.config import ModelConfig
from ecg_gcn.labels import NUM_CLASSES

C = NUM_CLASSES


@pytest.fixture(scope="module")
def adjacency() -> np.ndarray:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 0.3, (C, C)) * (rng.uniform(0, 1, (C, C)) < 0.2)
    return (a + np.eye(C)).astype(np.float32)


@pytest.fixture(scope="module")
def model(adjacency) -> nets.ECGNet:
    torch.manual_seed(0)
    return nets.build_model(ModelConfig(), adjacency).eval()


@pytest.mark.parametrize("length", [1, 2, 511, 512, 513, 1000, 1024, 5000, 9000, 30000])
def test_one_feature_vector_per_512_samples(model, length):
    """The CNN's output has ceil(T / 512) steps: every convolution pads "same" and gives
    ceil(L / stride), and nested ceilings of divisions compose into one."""
    with torch.no_grad():
        h = model.cnn(torch.randn(1, 12, length))
    assert h.shape == (1, 256, math.ceil(length / 512))
    assert nets.output_steps(length) == h.shape[-1]


@pytest.mark.parametrize("length", [1000, 5000, 9000, 30000])
def test_logits_for_any_length(model, length):
    with torch.no_grad():
        logits = model(torch.randn(2, 12, length))
    assert logits.shape == (2, C) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("length", "stride"), [(7, 1), (8, 1), (7, 2), (8, 2), (1, 2), (9, 4)])
def test_same_convolution_lengths(length, stride):
    conv = nets.SameConv1d(3, 5, 16, stride)
    assert conv(torch.randn(2, 3, length)).shape == (2, 5, -(-length // stride))


def test_variants_follow_table_1():
    assert list(nets.VARIANTS) == ["1dcnn", "resnet", "resnet_bigru", "resnet_bigru_gcn"]
    assert nets.variant("resnet_bigru_gcn") == ModelConfig()
    with pytest.raises(ValueError, match="1dcnn, resnet"):
        nets.variant("transformer")


@pytest.mark.parametrize("name", nets.VARIANTS)
def test_each_variant_trains_one_step(name, adjacency):
    torch.manual_seed(0)
    config = nets.variant(name)
    model = nets.build_model(config, adjacency if config.head == "gcn" else None).train()
    x, y = torch.randn(2, 12, 1024), (torch.rand(2, C) < 0.3).float()
    logits = model(x)
    assert logits.shape == (2, C)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"


def test_the_plain_cnn_has_the_same_convolutions_without_shortcuts(adjacency):
    plain = nets.build_model(nets.variant("1dcnn"), None)
    resnet = nets.build_model(nets.variant("resnet"), None)
    shortcut = [n for n in dict(resnet.named_parameters()) if "shortcut" in n]
    assert len(shortcut) == 3  # the 1x1 projections of blocks 4, 8 and 12
    assert not [n for n, _ in plain.named_parameters() if "shortcut" in n]
    assert {n: p.shape for n, p in plain.named_parameters()} == {
        n: p.shape for n, p in resnet.named_parameters() if "shortcut" not in n
    }


def test_the_widths_double_every_fourth_block(model):
    widths = [block.conv2.out_channels for block in model.cnn.blocks]
    assert widths == [32] * 4 + [64] * 4 + [128] * 4 + [256] * 4


def test_the_adjacency_is_a_saved_buffer_not_a_parameter(model, adjacency):
    state = model.state_dict()
    assert "head.adjacency" in state
    np.testing.assert_array_equal(state["head.adjacency"].numpy(), adjacency)
    assert "head.nodes" not in state  # the one-hot inputs are a constant
    names = {n for n, _ in model.named_parameters()}
    assert not any("adjacency" in n for n in names)
    assert not model.head.adjacency.requires_grad


def test_logits_are_f_times_z_transposed(model):
    with torch.no_grad():
        x = torch.randn(3, 12, 1024)
        f = model.features(x)
        z = model.head.classifiers()
        assert f.shape == (3, 256) and z.shape == (C, 256)
        torch.testing.assert_close(model(x), f @ z.T)


def test_the_graph_shapes_the_classifiers(adjacency):
    torch.manual_seed(0)
    a = nets.build_model(ModelConfig(), adjacency).head
    torch.manual_seed(0)
    b = nets.build_model(ModelConfig(), np.eye(C)).head
    with torch.no_grad():
        assert not torch.allclose(a.classifiers(), b.classifiers())


@pytest.mark.parametrize("head", ["gcn", "linear"])
def test_save_and_load_give_identical_outputs(tmp_path, adjacency, head):
    torch.manual_seed(0)
    config = dataclasses.replace(ModelConfig(), head=head)
    model = nets.build_model(config, adjacency).eval()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    loaded = nets.model_from_state_dict(config, state).eval()
    x = torch.randn(2, 12, 2000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    if head == "gcn":  # the placeholder graph was overwritten by the saved one
        np.testing.assert_array_equal(loaded.head.adjacency.numpy(), adjacency)


def test_a_placeholder_graph_is_overwritten_by_load_state_dict(model, adjacency):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = nets.build_model(ModelConfig(), np.eye(C)).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    np.testing.assert_array_equal(fresh.head.adjacency.numpy(), adjacency)
    x = torch.randn(1, 12, 1500)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(12, 1000), (2, 11, 1000), (2, 1, 12, 1000), (2, 12, 0)])
def test_a_bad_input_shape_is_refused(model, shape):
    with pytest.raises(ValueError, match=r"\(B, 12, T\)"):
        model(torch.zeros(shape))


def test_an_integer_input_is_refused(model):
    with pytest.raises(ValueError, match="floating"):
        model(torch.zeros(1, 12, 1000, dtype=torch.int16))


def test_build_model_checks_the_adjacency():
    with pytest.raises(ValueError, match="adjacency"):
        nets.build_model(ModelConfig(), None)
    with pytest.raises(ValueError, match=r"\(24, 24\)"):
        nets.build_model(ModelConfig(), np.eye(23))
    with pytest.raises(ValueError, match="non-finite"):
        nets.build_model(ModelConfig(), np.full((C, C), np.nan))
    assert nets.build_model(nets.variant("resnet_bigru"), None) is not None


def test_parameter_count_by_hand(model):
    k = 16
    conv = 12 * 32 * k  # the first convolution
    bn = 2 * 32
    for c_in, c_out in [(32, 32), (32, 64), (64, 128), (128, 256)]:  # four stages of 4 blocks
        conv += c_in * c_out * k + 7 * c_out * c_out * k  # 8 convolutions of kernel 16
        conv += c_in * c_out if c_in != c_out else 0  # the 1x1 projection
        bn += 8 * 2 * c_out
    gru = 2 * 3 * (256 * 128 + 128 * 128 + 2 * 128)  # 2 directions, 3 gates, 2 biases
    gru += 2 * 256  # the layer norm before the GRU
    gcn = 24 * 128 + 128 * 256 + 256 * 256
    expected = conv + bn + gru + gcn
    print(f"parameters of the full model: {nets.count_parameters(model):,}")
    assert nets.count_parameters(model) == expected == 10_908_224


def test_forward_flops_of_an_18_s_window(model):
    gflop = nets.forward_flops(model, 9000)
    print(f"GFLOP per 18 s window: {gflop:.3f}")
    # About 2.5: the convolutions at 250 Hz and below, 2 FLOP per multiply-add.
    assert 2.3 < gflop < 2.8
    assert nets.forward_flops(model, 5000) < gflop


def test_the_masked_loss_is_bce_over_the_known_labels_and_ignores_the_rest():
    from ecg_gcn.train import masked_bce

    torch.manual_seed(0)
    logits = torch.randn(4, 24, requires_grad=True)
    y = (torch.rand(4, 24) > 0.7).float()
    plain = torch.nn.BCEWithLogitsLoss()(logits, y)
    torch.testing.assert_close(masked_bce(logits, y), plain)
    hidden = y.clone()
    hidden[:2, :10] = float("nan")
    loss = masked_bce(logits, hidden)
    keep = ~torch.isnan(hidden)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], y[keep])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert (logits.grad[:2, :10] == 0).all() and (logits.grad[keep] != 0).all()
