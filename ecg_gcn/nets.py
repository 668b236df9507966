"""The CNN-BiGRU-GCN network of the paper (section 2) and its Table 1 ablations.

Input (B, 12, T): the 12 leads in standard order, in mV, at 500 Hz, any T >= 1 (training uses
T = 9000, 18 s). Output: logits (B, 24), one per merged scored class of `ecg_gcn.labels.CLASSES`;
`forward` never applies the sigmoid.

    x (B, 12, T) --ResNet1d--> (B, 256, ceil(T / 512)) --BiGRU, pool--> F (B, D)
    label graph A_hat (C, C), one-hot nodes (C, C) --3 GCN layers--> Z (C, D)
    logits = F Z^T (B, C)

The ablations of Table 1 are switches of `ModelConfig` (`VARIANTS`): no shortcuts (a plain 1-D
CNN), no GRU (F = the CNN features pooled over time), and a linear head instead of the GCN.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ecg_gcn.config import VARIANTS, ModelConfig


def variant(name: str, base: ModelConfig | None = None) -> ModelConfig:
    """The ModelConfig of a Table 1 row: `base` (default: the paper's) with its overrides."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; the variants are: {', '.join(VARIANTS)}")
    return dataclasses.replace(base or ModelConfig(), **VARIANTS[name])


class SameConv1d(nn.Conv1d):
    """A 1-D convolution whose output has ceil(L / stride) steps for any input length L.

    The padding depends on L (as TensorFlow's "same"), so it is applied in `forward`. A kernel of
    even width cannot be centred: the odd sample of padding goes on the right, so output step i
    sees the input around i * stride, slightly ahead rather than behind.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        (stride,), (kernel,) = self.stride, self.kernel_size
        out = -(-length // stride)  # ceil(L / stride)
        pad = max((out - 1) * stride + kernel - length, 0)
        return super().forward(F.pad(x, (pad // 2, pad - pad // 2)))


class ConvBNReLU(nn.Sequential):
    """Convolution -> batch norm -> ReLU -> dropout: the unit the paper repeats everywhere."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, dropout: float):
        super().__init__(
            SameConv1d(c_in, c_out, kernel, stride),
            nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


class ResidualBlock(nn.Module):
    """Two convolutions and a shortcut around them (He et al. 2016, "Deep residual learning").

    conv -> BN -> ReLU -> dropout -> conv -> BN -> (+ shortcut) -> ReLU -> dropout. The first
    convolution changes the width and subsamples, so the second runs on the shorter sequence.
    The shortcut max-pools where the length halves (as Hannun et al. 2019) and projects with a
    1x1 convolution where the width changes. With `residual=False` the shortcut is dropped: the
    plain 1-D CNN of Table 1, layer for layer the same convolutions.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, dropout: float, residual: bool
    ):
        super().__init__()
        self.conv1 = ConvBNReLU(c_in, c_out, kernel, stride, dropout)
        self.conv2 = SameConv1d(c_out, c_out, kernel)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual
        self.shortcut = nn.Identity()
        if residual and (stride > 1 or c_in != c_out):
            layers: list[nn.Module] = []
            if stride > 1:  # ceil_mode: ceil(L / stride) steps, as the convolutions
                layers.append(nn.MaxPool1d(stride, ceil_mode=True))
            if c_in != c_out:
                layers.append(nn.Conv1d(c_in, c_out, 1, bias=False))
            self.shortcut = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.conv1(x)))
        if self.residual:
            out = out + self.shortcut(x)
        return self.dropout(F.relu(out))


class ResNet1d(nn.Module):
    """The ECG representation network's CNN: one convolution, then `n_blocks` residual blocks.

    The 1-D ResNet of Hannun et al. 2019 (kernel 16, widths 32 -> 256, every second block
    halving the length) as the paper describes it. (B, leads, T) -> (B, 256, ceil(T / 512)).

    Where the 512 comes from: 8 halving blocks give 256; the paper's one prediction per 512
    samples needs one more factor 2, and it is the first convolution's stride. There it halves
    the cost of every later layer (at 500 Hz, 250 feature steps per second still resolve a QRS of
    80 ms with 20 steps, and the convolution learns its own anti-aliasing filter), whereas an
    extra halving deep in the network would cost a block's worth of FLOPs and change the paper's
    pattern of one halving every second block.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        c, k, drop = config.filters, config.kernel_size, config.dropout
        self.stem = ConvBNReLU(config.n_leads, c, k, config.stem_stride, drop)
        blocks = []
        for i in range(config.n_blocks):
            c_out = config.filters * 2 ** (i // config.double_every)
            # With the paper's pattern blocks 1, 3, 5, ... halve, and a stage's width change
            # (blocks 4, 8, 12) never coincides with a halving.
            stride = 2 if i % config.subsample_every == config.subsample_every - 1 else 1
            blocks.append(ResidualBlock(c, c_out, k, stride, drop, config.residual))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class BiGRUEncoder(nn.Module):
    """A bidirectional GRU over the CNN's feature sequence, pooled over time to F (B, 2 * hidden).

    Mean pooling (the default) lets every step of the window count, wherever a finding sits in it.

    Not in the paper: the sequence is layer-normalised before the GRU. The last residual block
    adds up every block's shortcut, so its output reaches magnitudes of 30 or more; fed raw, that
    saturates the GRU's sigmoid and tanh gates and the network barely learns (BENCHMARKS.md,
    "The quick profile", has the memorisation test that showed it).
    """

    def __init__(self, channels: int, hidden: int, pooling: str, normalise: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(channels) if normalise else nn.Identity()
        self.gru = nn.GRU(channels, hidden, batch_first=True, bidirectional=True)
        self.pooling = pooling

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        seq = self.norm(features.transpose(1, 2))  # (B, C, T') -> (B, T', C)
        out, _ = self.gru(seq)  # (B, T', 2 * hidden)
        return pool(out, self.pooling, dim=1)


def pool(x: torch.Tensor, how: str, dim: int) -> torch.Tensor:
    """Mean or max over a dimension (the time axis)."""
    if how == "mean":
        return x.mean(dim)
    if how == "max":
        return x.amax(dim)
    raise ValueError(f"unknown pooling {how!r}; use mean or max")


class GraphConvolution(nn.Module):
    """H' = A_hat H W (Kipf & Welling 2017, "Semi-supervised classification with GCNs")."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)  # Glorot, as Kipf & Welling

    def forward(self, h: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        return a_hat @ (h @ self.weight)  # (C, in) -> (C, out)


class GCNHead(nn.Module):
    """ML-GCN's classifier (Chen et al. 2019): label nodes -> Z (C, D); logits = F Z^T.

    The nodes start as one-hot vectors (the paper's X in R^{C x C}) and pass through GCN layers
    with LeakyReLU(0.2) between them and none after the last, so each row of Z is a linear
    classifier of F shaped by the classes it is connected to. A_hat is a fixed graph computed
    from the training labels (ecg_gcn.graph): a persistent buffer, saved in the state dict and
    never trained (ML-GCN's code makes it a Parameter; the paper treats it as data).
    """

    def __init__(self, adjacency: torch.Tensor, hidden: tuple[int, ...], out: int, slope: float):
        super().__init__()
        c = adjacency.shape[0]
        self.register_buffer("adjacency", adjacency.clone().float())
        # A constant, rebuilt on construction: not worth a place in the checkpoint.
        self.register_buffer("nodes", torch.eye(c), persistent=False)
        widths = (c, *hidden, out)
        self.layers = nn.ModuleList(
            GraphConvolution(w_in, w_out) for w_in, w_out in itertools.pairwise(widths)
        )
        self.act = nn.LeakyReLU(slope)

    def classifiers(self) -> torch.Tensor:
        """Z (C, D): one weight vector per class."""
        h = self.nodes
        for i, layer in enumerate(self.layers):
            h = layer(h, self.adjacency)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.classifiers().to(features.dtype)
        return features @ z.T  # (B, D) @ (D, C) -> (B, C)


class ECGNet(nn.Module):
    """The assembled model: ResNet1d -> (BiGRU) -> pooled F -> GCN or linear head -> logits."""

    def __init__(self, config: ModelConfig, adjacency: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.cnn = ResNet1d(config)
        self.encoder = (
            BiGRUEncoder(
                self.cnn.out_channels, config.gru_hidden, config.pooling, config.gru_input_norm
            )
            if config.gru
            else None
        )
        d = config.feature_dim
        if config.head == "gcn":
            if adjacency is None:
                raise ValueError("a GCN head needs the adjacency matrix of the label graph")
            self.head: nn.Module = GCNHead(
                adjacency, config.gcn_hidden, d, config.gcn_negative_slope
            )
        else:
            self.head = nn.Linear(d, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d):  # He et al. 2015 for layers followed by ReLU
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """F (B, D), the ECG-level representation of the paper's eq. 1."""
        h = self.cnn(x)  # (B, 256, ceil(T / 512))
        if self.encoder is not None:
            return self.encoder(h)
        return pool(h, self.config.pooling, dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config.n_leads)
        return self.head(self.features(x))


def check_input(x: torch.Tensor, n_leads: int = 12) -> None:
    """Raise ValueError unless x is a floating (B, n_leads, T) batch with B, T >= 1."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (B, {n_leads}, T), got {type(x)}")
    if x.ndim != 3 or x.shape[1] != n_leads or x.shape[0] < 1 or x.shape[2] < 1:
        raise ValueError(
            f"expected input of shape (B, {n_leads}, T) (batch, leads, samples at 500 Hz), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point signal in mV, got dtype {x.dtype}")


def build_model(config: ModelConfig, adjacency: np.ndarray | None) -> ECGNet:
    """The network of `config`; a GCN head needs the (C, C) A_hat of `ecg_gcn.graph.adjacency`.

    The linear head ignores `adjacency`. To load a checkpoint, pass any (C, C) placeholder (or
    use `model_from_state_dict`): the saved A_hat replaces it.
    """
    if config.head != "gcn":
        return ECGNet(config)
    c = config.num_classes
    if adjacency is None:
        raise ValueError(
            f"the GCN head needs a ({c}, {c}) adjacency matrix: compute it from the training "
            "labels with ecg_gcn.graph.adjacency, or pass np.eye to load a checkpoint"
        )
    a = np.asarray(adjacency)
    if a.shape != (c, c):
        raise ValueError(f"the adjacency must be ({c}, {c}) for {c} classes, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the adjacency has non-finite entries")
    return ECGNet(config, torch.as_tensor(a, dtype=torch.float32))


class Ensemble(nn.Module):
    """Networks of one configuration whose probabilities are averaged (`TrainConfig.members`),
    with `weights` (equal by default; the synthetic-only anchor of `TrainConfig.synthetic_anchor`
    has its own).

    `forward` gives the logit of the weighted mean probability, so whatever takes ECGNet's
    logits (the sigmoid of inference, the gradients of ecg_gcn.explain) takes an ensemble
    alike."""

    def __init__(self, members: Sequence[ECGNet], weights: Sequence[float] | None = None):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        n = len(members)
        w = torch.full((n,), 1.0 / n) if weights is None else torch.as_tensor(weights).float()
        if w.shape != (n,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(f"an ensemble of {n} needs {n} finite weights >= 0, got {weights!r}")
        if not float(w.sum()) > 0:
            raise ValueError(f"an ensemble's weights must not all be 0, got {weights!r}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config
        self.register_buffer("weights", w / w.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.sigmoid(m(x).float()) for m in self.members])
        return torch.logit(torch.tensordot(self.weights, p, dims=1), eps=1e-7)


def model_from_state_dict(
    config: ModelConfig, state_dict: Mapping[str, torch.Tensor]
) -> ECGNet | Ensemble:
    """Rebuild a saved model: the architecture from `config`, weights and A_hat from the dict;
    an Ensemble when the dict holds members (keys `members.<i>.`; equal weights when it
    predates them)."""
    placeholder = np.eye(config.num_classes, dtype=np.float32)
    indices = {int(key.split(".")[1]) for key in state_dict if key.startswith("members.")}
    if not indices:
        model = build_model(config, placeholder)
        model.load_state_dict(state_dict)
        return model
    ensemble = Ensemble([build_model(config, placeholder) for _ in indices])
    state = dict(state_dict)
    state.setdefault("weights", ensemble.weights.clone())
    ensemble.load_state_dict(state)
    return ensemble


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters (the GCN's adjacency is a buffer, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(model: nn.Module, length: int = 9000) -> float:
    """GFLOP of one forward pass of a (1, 12, length) window, in evaluation mode.

    Counted by torch's FlopCounterMode on a CPU copy of the model: convolutions, the GRU's
    matrix products (on the CPU it runs as addmm, which is counted; cuDNN's fused GRU would not
    be) and the heads' matrix products, a multiply-add counting 2. Batch norm, activations,
    pooling and padding are not counted; they are well under 1 % of the total.
    """
    n_leads = model.config.n_leads if isinstance(model, ECGNet) else 12
    cpu = copy.deepcopy(model).cpu().eval()
    x = torch.zeros(1, n_leads, length)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        cpu(x)
    return counter.get_total_flops() / 1e9


def output_steps(length: int, config: ModelConfig | None = None) -> int:
    """Time steps of the CNN's output for an input of `length` samples: ceil(length / stride)."""
    return math.ceil(length / (config or ModelConfig()).stride)
