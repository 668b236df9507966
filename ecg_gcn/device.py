"""Where and how precisely the network runs: the device, the seeds, the arithmetic."""

from __future__ import annotations

import contextlib
import random

import torch


def pick_device() -> torch.device:
    """CUDA when present, the CPU otherwise: decided once, passed everywhere."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """One seed for Python and torch (CPU and CUDA); numpy randomness here always takes an
    explicit Generator seeded from the configuration."""
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def precision(device: torch.device, amp: bool):
    """(autocast context factory, grad scaler): autocast on CUDA (bf16 where supported, else
    fp16 with a grad scaler, and TF32 matmuls); plain fp32 on the CPU."""
    if device.type != "cuda" or not amp:
        return contextlib.nullcontext, torch.amp.GradScaler(enabled=False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler
