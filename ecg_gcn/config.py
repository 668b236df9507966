"""Configuration: frozen dataclasses of the model and the training, named profiles, dict round trip.

A `ModelConfig` is saved with the weights as a plain dict (`to_dict`), so a checkpoint alone
rebuilds the network and loads with `torch.load(weights_only=True)`. The defaults are the paper's
network (section 2) and training (section 3.3); the gaps the paper leaves are filled here,
each such choice marked "not in the paper" below.

Profiles: `paper` (the default of train_model.py) and `quick` (a CPU demo of a few minutes),
chosen with the environment variable ECG_GCN_PROFILE.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ecg_gcn import graph, thresholds
from ecg_gcn.augment import Augment
from ecg_gcn.labels import NUM_CLASSES
from ecg_gcn.signal import Preprocess

HEADS = ("gcn", "linear")
POOLINGS = ("mean", "max")
SELECT_METRICS = ("challenge", "loss")
PROFILE_ENV = "ECG_GCN_PROFILE"
DEFAULT_PROFILE = "paper"


@dataclass(frozen=True)
class ModelConfig:
    """The CNN-BiGRU-GCN network; the defaults are the full model of the paper's Table 1."""

    n_leads: int = 12
    num_classes: int = NUM_CLASSES  # 24: the 27 scored codes with the equivalent pairs merged
    # ResNet-1D (He et al. 2016; the 1-D layout of Hannun et al. 2019).
    filters: int = 32  # of the first convolution and the first stage
    kernel_size: int = 16
    n_blocks: int = 16
    double_every: int = 4  # the filters double at the first convolution of every 4th block
    subsample_every: int = 2  # every 2nd block halves the length
    # Not in the paper: 16 blocks halving every 2nd give a stride of 256; the first convolution's
    # stride 2 makes the paper's 512 (see nets.ResNet1d for why it goes there).
    stem_stride: int = 2
    dropout: float = 0.2
    residual: bool = True  # False: the plain 1-D CNN of Table 1 (same convolutions, no shortcuts)
    # Bidirectional GRU over the CNN's feature sequence; F in R^D with D = 2 * gru_hidden.
    gru: bool = True
    gru_hidden: int = 128  # not in the paper
    # Not in the paper: layer-normalise the CNN features before the GRU (see nets.BiGRUEncoder).
    gru_input_norm: bool = True
    pooling: str = "mean"  # over time, of the GRU outputs (or the CNN features without the GRU)
    # Classifier: "gcn" (Chen et al. 2019's ML-GCN head) or "linear" (Table 1's first three rows).
    head: str = "gcn"
    # Widths between the one-hot node inputs (C) and Z (C x D): 2 hidden widths = 3 GCN layers.
    gcn_hidden: tuple[int, ...] = (128, 256)  # not in the paper
    gcn_negative_slope: float = 0.2  # LeakyReLU between GCN layers, as in ML-GCN
    # Label graph (ecg_gcn.graph): binarisation threshold and neighbour weight, ML-GCN's values.
    tau: float = 0.4
    p: float = 0.25

    def __post_init__(self) -> None:
        # JSON gives lists; keep the config hashable and comparable.
        object.__setattr__(self, "gcn_hidden", tuple(self.gcn_hidden))
        for name in (
            "n_leads",
            "num_classes",
            "filters",
            "kernel_size",
            "n_blocks",
            "double_every",
            "subsample_every",
            "stem_stride",
            "gru_hidden",
        ):
            _check_positive_int(self, name)
        for width in self.gcn_hidden:
            if not _is_int(width) or width < 1:
                raise ValueError(f"gcn_hidden must hold positive ints, got {self.gcn_hidden!r}")
        for name in ("residual", "gru", "gru_input_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_choice(self, "head", HEADS)
        _check_choice(self, "pooling", POOLINGS)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        graph.check_tau_p(self.tau, self.p)
        if self.gcn_negative_slope < 0:
            raise ValueError(f"gcn_negative_slope must be >= 0, got {self.gcn_negative_slope!r}")

    @property
    def stride(self) -> int:
        """Input samples per output time step of the CNN (512 for the paper's network)."""
        return self.stem_stride * 2 ** (self.n_blocks // self.subsample_every)

    @property
    def cnn_channels(self) -> int:
        """Channels of the CNN's last stage (256 for the paper's network)."""
        return self.filters * 2 ** ((self.n_blocks - 1) // self.double_every)

    @property
    def feature_dim(self) -> int:
        """D, the size of the ECG-level feature F (and of each row of Z)."""
        return 2 * self.gru_hidden if self.gru else self.cnn_channels


@dataclass(frozen=True)
class TrainConfig:
    """Training; the defaults are the paper's section 3.3 (profile `paper`)."""

    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    # Per process: under torchrun with N processes a step averages N x batch_size windows
    # (README, "Training on several GPUs"); the learning rate is not scaled with N.
    batch_size: int = 32
    max_epochs: int = 100
    # ReduceLROnPlateau on the validation loss: x0.1 after 2 epochs without improvement. PyTorch
    # cuts after `patience + 1` epochs without improvement, so the paper's 2 is patience 1.
    lr_factor: float = 0.1
    lr_patience: int = 1
    # Not in the paper (it trains all 100 epochs): stop once 10 epochs in a row brought no
    # better validation score; by then the learning rate has been cut about three times.
    early_stop_patience: int = 10
    select_metric: str = "challenge"  # picks the best epoch; "loss" is the alternative
    validation_fraction: float = 0.1  # not in the paper: a stratified hold-out split
    seed: int = 0
    num_workers: int = 4  # DataLoader processes, at most one per core
    amp: bool = True  # bf16/fp16 autocast on CUDA; ignored on the CPU
    compile: bool = False  # torch.compile the model
    deterministic: bool = False  # deterministic algorithms (slower on CUDA)
    threshold_mode: str = "global_then_per_class"  # how ecg_gcn.thresholds tunes the cut-offs
    # Not in the paper: a class with fewer positive validation records than this keeps the
    # global cut-off. Tuned on a handful of examples, a class's cut-off learnt those records and
    # fired on the recordings of a new hospital (BENCHMARKS.md, "Thresholds", "Round five").
    # Every scored class has more on the 43,101 Challenge recordings.
    threshold_min_positives: int = 20
    # Not in the paper: an ensemble of this many networks, cross-fitted. The data's records are
    # cut into `members` stratified parts; member i trains on the others and validates on part
    # i (its epoch); the thresholds are tuned on every record's out-of-fold probability, and
    # inference averages the members' probabilities. 1: one network validated on a
    # `validation_fraction` hold-out, as the paper trains it. README, "New hospitals".
    members: int = 5
    # The rate, band-pass and window every record goes through, in training and inference alike
    # (signal.Preprocess); the checkpoint stores it for the driver.
    preprocess: Preprocess = dataclasses.field(default_factory=Preprocess)
    # Not in the paper: synthetic records (ecg_gcn.synth), made inside training and cached
    # (ecg_gcn.synthetic). The network is pre-trained on them alone, then trained on the data
    # with synthetic records mixed into every epoch. The simulator's physiology is what carries
    # over to a hospital the data never saw (README, "New hospitals"). 0 turns it off: the
    # real-only path.
    synthetic: int = 6000  # records in the synthetic pool, drawn from the seed below
    synthetic_seed: int = 0
    synthetic_pretrain_epochs: int = 6  # epochs on the synthetic pool alone, before the data
    # Synthetic records drawn afresh for every epoch on the data, per real training record
    # (capped at the pool): 1.0 doubles a small data set; on the 43,101 Challenge recordings
    # the whole pool of 6,000 adds 15 % to an epoch.
    synthetic_mix: float = 1.0
    # Adam's rate on the data after pre-training (None: `lr`). A lower rate keeps the network
    # nearer what the simulator taught it.
    synthetic_finetune_lr: float | None = None
    # Not in the paper: an ensemble (`members` > 1) keeps a network trained on the synthetic
    # pool alone (train.fit_synthetic_only: its own validation part of the pool picks the
    # epoch), which never saw a real record, as one more member with this share of the mean
    # probability (the fine-tuned members share the rest); the thresholds are tuned on that
    # mean. Fine-tuned on a few hundred records, the members learn those hospitals' labelling
    # habits with their signals; the anchor keeps the simulator's physiology in every answer.
    # The share holds up to `synthetic_anchor_records` real training records and falls in
    # proportion beyond (x 250 / N: 0.06 at 2,000 records); below train.MIN_ANCHOR_SHARE
    # (from 12,500 records on) the anchor is left out, and its training with it. Only the
    # small end (65 to 215 records) is measured. 0 turns it off. README, "New hospitals".
    synthetic_anchor: float = 0.5
    synthetic_anchor_records: int = 250
    # Not in the paper: the anchor is the mean of this many synthetic-only networks, network k
    # trained from `seed` + k on its own pool (`synthetic_seed` + k, `synthetic` records), for
    # at most `synthetic_anchor_epochs` epochs (and `max_epochs`). One network's answers on a
    # new hospital depend on its draw far more than on its length of training; three 4-epoch
    # networks (about the same training time as one of 10) narrowed the spread between seeds
    # but did not raise the mean, and lowered it from CPSC alone (BENCHMARKS.md, "Round
    # fourteen"), so the default stays one network trained to its best epoch.
    synthetic_anchors: int = 1
    synthetic_anchor_epochs: int = 10
    # Not in the paper: with True, the members start from the first synthetic-only network
    # (`fit_synthetic_only`, the anchor's network 0) instead of a pre-training of their own
    # (`synthetic_pretrain_epochs` is then unused): one training on the pool serves both, which
    # halves the time spent on it. Only with a synthetic pool and a share of anchor.
    pretrain_from_anchor: bool = False
    # Not in the paper: the model is the mean of this many replicas of the whole training, each
    # with its own pool, networks and thresholds: replica r trains from `seed` + r on the pool of
    # `synthetic_seed` + r, exactly as one model would, and the model averages the replicas'
    # probabilities (each replica's networks at its weights over `replicas`) at the mean of
    # their thresholds. On a new hospital one model's answers depend on its draw; averaging
    # several draws steadies them (BENCHMARKS.md, "Round fifteen"). It costs `replicas` times
    # the training. With several anchor networks too, their pools would overlap the replicas':
    # one or the other.
    replicas: int = 1
    # Not in the paper: an ensemble with a synthetic pool also scores this many fresh synthetic
    # records (from `synthetic_seed` + synthetic.THRESHOLD_SEED_OFFSET, none of them in the
    # pool) and tunes thresholds on them as on the real out-of-fold records. Its thresholds are
    # the weighted mean of the two: the synthetic ones weigh all up to `synthetic_anchor_records`
    # real training records and 250 / N beyond, as the anchor's share falls. Cut-offs tuned on
    # a few hundred records of a few hospitals carry their labelling habits to the next
    # hospital; cut-offs tuned on the simulator carry its physiology. 0 turns it off (the real
    # out-of-fold records alone). README, "New hospitals".
    synthetic_threshold_records: int = 600
    # Not in the paper: no class is answered on more of an ensemble's training records (out of
    # fold) than `firing_cap` of them, or `firing_cap_prevalence` times the share that carry
    # it, whichever is larger: its threshold is raised until it is not. Thresholds tuned on the
    # simulator fired long QT, T-wave abnormal and pathological Q on real recordings that carry
    # none (long QT on 29 % of CPSC's); tuned on the data itself, a class fires near its
    # prevalence and the cap does not bind. 0 turns it off. README, "New hospitals".
    firing_cap: float = 0.15
    firing_cap_prevalence: float = 4.0
    # Not in the paper: the loss leaves out the labels a record's database never gives
    # (labels.known_classes): CPSC labels 6 of the 24 classes, and its records taught the
    # network that their tachycardias and axis deviations were absent. README, "New hospitals".
    mask_unlabelled: bool = True
    # Not in the paper: the measured rhythm decides where it is clear (ecg_gcn.measure): AF
    # never on a regular rhythm and always on a clearly irregular one; a measured premature
    # beat answers PAC or PVC, whichever the network puts higher against its threshold. The
    # thresholds are tuned without the rules. False: the network's thresholds alone. README,
    # "New hospitals".
    rhythm_rules: bool = True
    # Not in the paper: where the median beat's QRS ends in V1 on a late positive deflection
    # (R', measure.RBBB_V1) and the network answered neither complete nor incomplete right bundle
    # branch block, complete RBBB is answered; where V1 ends on its S wave
    # (measure.NO_R_PRIME_V1), incomplete RBBB is not (ecg_gcn.measure). The thresholds are
    # tuned without the rule. README, "New hospitals".
    rbbb_rule: bool = True
    # Not in the paper: a class is not answered where the measure that defines it says it is
    # absent (ecg_gcn.measure): no nonspecific intraventricular conduction delay on a narrow
    # QRS, no sinus arrhythmia on a steady rhythm, no premature beat (PAC, PVC) where none is
    # measured in a rhythm that is not AF-irregular. They struck the false positives of the
    # normal recordings of new hospitals (BENCHMARKS.md, "Round sixteen"). The thresholds are
    # tuned without them.
    veto_rules: bool = True
    # Augmentation of the training batches (ecg_gcn.augment); off unless a profile sets it.
    augment: Augment = dataclasses.field(default_factory=Augment)

    def __post_init__(self) -> None:
        if isinstance(self.augment, Mapping):  # JSON gives a dict
            object.__setattr__(self, "augment", Augment(**self.augment))
        if not isinstance(self.augment, Augment):
            raise ValueError(f"augment must be an Augment, got {self.augment!r}")
        for name in (
            "synthetic",
            "synthetic_seed",
            "synthetic_pretrain_epochs",
            "synthetic_threshold_records",
        ):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        lr = self.synthetic_finetune_lr
        if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"synthetic_finetune_lr must be > 0 or None, got {lr!r}")
        _check_non_negative(self, "synthetic_mix")
        _check_share(self, "synthetic_anchor")
        _check_share(self, "firing_cap")
        _check_non_negative(self, "firing_cap_prevalence")
        if isinstance(self.preprocess, Mapping):  # JSON gives a dict
            object.__setattr__(self, "preprocess", Preprocess.from_dict(self.preprocess))
        if not isinstance(self.preprocess, Preprocess):
            raise ValueError(f"preprocess must be a Preprocess, got {self.preprocess!r}")
        for name in (
            "batch_size",
            "max_epochs",
            "members",
            "synthetic_anchor_records",
            "synthetic_anchors",
            "synthetic_anchor_epochs",
            "replicas",
        ):
            _check_positive_int(self, name)
        if self.replicas > 1 and self.synthetic_anchors > 1:
            raise ValueError(
                f"replicas ({self.replicas}) and synthetic_anchors ({self.synthetic_anchors}) "
                "are two ways to average draws, and their pools would overlap: set one of them"
            )
        for name in (
            "lr_patience",
            "early_stop_patience",
            "seed",
            "num_workers",
            "threshold_min_positives",
        ):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in (
            "amp",
            "compile",
            "deterministic",
            "mask_unlabelled",
            "rhythm_rules",
            "rbbb_rule",
            "veto_rules",
            "pretrain_from_anchor",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_choice(self, "select_metric", SELECT_METRICS)
        _check_choice(self, "threshold_mode", thresholds.MODES)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1), got {self.lr_factor!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )

    def simulator_weight(self, n_records: int) -> float:
        """How much the simulator's say counts beside `n_records` real training records: 1 up
        to `synthetic_anchor_records`, falling in proportion beyond."""
        return min(1.0, self.synthetic_anchor_records / max(n_records, 1))

    def anchor_share(self, n_records: int) -> float:
        """The anchor's share of an ensemble trained on `n_records` real records."""
        return self.synthetic_anchor * self.simulator_weight(n_records)

    def synthetic_threshold_share(self, n_records: int) -> float:
        """The weight of the thresholds tuned on fresh synthetic records in an ensemble's
        thresholds, beside `n_records` real training records (0 when turned off)."""
        return self.simulator_weight(n_records) if self.synthetic_threshold_records else 0.0


# Validation helpers, needed before PROFILES builds its configurations.


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive_int(config: object, name: str) -> None:
    value = getattr(config, name)
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_non_negative(config: object, name: str) -> None:
    value = getattr(config, name)
    if not (_is_number(value) and value >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _check_share(config: object, name: str) -> None:
    value = getattr(config, name)
    if not (_is_number(value) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_choice(config: object, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# The trained models of the new-hospital protocols (ecg_gcn.hospitals), here so that the
# command line can offer them without importing torch: the entry's default, its real-only
# ablation (`synthetic=0`) and the synthetic-only network, the default's anchor.
PROTOCOL_MODELS = ("default", "real only", "synthetic only")

# Table 1 of the paper, in its order: ModelConfig overrides of each row (nets.variant).
VARIANTS: dict[str, dict[str, object]] = {
    "1dcnn": {"residual": False, "gru": False, "head": "linear"},
    "resnet": {"residual": True, "gru": False, "head": "linear"},
    "resnet_bigru": {"residual": True, "gru": True, "head": "linear"},
    "resnet_bigru_gcn": {"residual": True, "gru": True, "head": "gcn"},
}

# The quick profile: a CPU run of minutes (the demo's synthetic training records, or the real
# sample, with the synthetic pool). The paper's network is too slow on 2 cores for a useful
# number of records and epochs; a quarter of the widths keeps every layer of its architecture.
# No dropout: on small data the paper's 0.2 after every ReLU stalls learning. 10 s windows (the
# Challenge's short records are mostly 10 s, so 18 s would be half zeros), short patiences, no
# worker processes (on 2 cores their start-up costs more than reading a memory-mapped cache).
# The measurements behind each choice: BENCHMARKS.md, "The quick profile".
PROFILES: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "paper": (ModelConfig(), TrainConfig()),
    "quick": (
        ModelConfig(filters=8, gru_hidden=32, dropout=0.0),
        TrainConfig(
            max_epochs=10,
            lr_patience=1,
            early_stop_patience=3,
            preprocess=Preprocess(window_seconds=10.0),
            num_workers=0,
            # Three replicas of the whole training, averaged: the same mean as one on held-out
            # databases, a third of its spread between seeds, at the same cost (each replica's
            # anchor trains 4 epochs, not 10, and its members start from it instead of a
            # pre-training of their own). BENCHMARKS.md, "Round fifteen".
            replicas=3,
            pretrain_from_anchor=True,
            synthetic_anchor_epochs=4,
        ),
    ),
    # Checks an installation end to end in seconds (the tests use it); not a useful model.
    "smoke": (
        ModelConfig(filters=8, gru_hidden=16, gcn_hidden=(32, 32)),
        TrainConfig(
            max_epochs=2,
            batch_size=8,
            preprocess=Preprocess(window_seconds=10.0),
            num_workers=0,
            synthetic=0,
            members=1,
        ),
    ),
}
# `make demo`: the quick profile with one network, one replica and its own pre-training. Its
# training records come from the simulator itself, so there is no new hospital for an ensemble
# to survive, and five members would take about 20 min of 2 cores instead of 5.
PROFILES["demo"] = (
    PROFILES["quick"][0],
    dataclasses.replace(
        PROFILES["quick"][1],
        members=1,
        replicas=1,
        pretrain_from_anchor=False,
        synthetic_anchor_epochs=TrainConfig.synthetic_anchor_epochs,
    ),
)


def profile(name: str) -> tuple[ModelConfig, TrainConfig]:
    """The (model, training) configuration of a named profile."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; the profiles are: {', '.join(PROFILES)}")
    return PROFILES[name]


def profile_from_env(environ: Mapping[str, str] | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The profile named by ECG_GCN_PROFILE (`paper` when unset or empty)."""
    environ = os.environ if environ is None else environ
    name = environ.get(PROFILE_ENV, "").strip() or DEFAULT_PROFILE
    try:
        return profile(name)
    except ValueError as error:
        raise ValueError(f"{PROFILE_ENV}: {error}") from None


def to_dict(config: ModelConfig | TrainConfig) -> dict[str, Any]:
    """A plain, JSON-able dict of a configuration (tuples become lists)."""
    return {field.name: _plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def model_config_from_dict(d: Mapping[str, Any]) -> ModelConfig:
    """Inverse of `to_dict` for a ModelConfig; a missing key takes its default."""
    return _from_dict(ModelConfig, d)


def train_config_from_dict(d: Mapping[str, Any]) -> TrainConfig:
    """Inverse of `to_dict` for a TrainConfig; a missing key takes its default."""
    return _from_dict(TrainConfig, d)


_Config = TypeVar("_Config", ModelConfig, TrainConfig)


def _from_dict(cls: type[_Config], d: Mapping[str, Any]) -> _Config:
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**d)  # __post_init__ validates the values and turns lists back into tuples


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value
