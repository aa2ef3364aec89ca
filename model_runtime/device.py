"""Device and precision selection: CUDA, then Apple MPS, then CPU."""
from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")


def mps_works() -> bool:
    """True when Apple's MPS backend is present and runs the ops the network needs."""
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return False
    try:
        x = torch.zeros(1, 1, 2, 2, device="mps")
        torch.nn.functional.grid_sample(x, torch.zeros(1, 1, 1, 2, device="mps"), align_corners=True)
        return True
    except Exception:  # an op missing on this macOS / torch build
        return False


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS (when it works), then CPU. Unavailable choices raise ValueError."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_works():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("CUDA was requested but no CUDA GPU is available to this PyTorch build; use 'cpu'")
        return torch.device(name)
    if name == "mps":
        if not mps_works():
            raise ValueError("Apple MPS was requested but is not available here; use 'cpu'")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        from torch.backends import cpu as cpu_backend

        cap = cpu_backend.get_cpu_capability()
    except Exception:
        cap = ""
    if cap in ("AVX512_BF16", "AMX") or "AMX" in str(cap):
        return True
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Compute dtype for the network's matrix work. 'auto': fp16 on CUDA, fp32 elsewhere."""
    precision = (precision or "auto").lower()
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "bf16":
        if device.type == "cpu" and not cpu_supports_bf16():
            raise ValueError("bf16 was requested but this CPU has no native bfloat16 support; use fp32")
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ValueError("fp16 is not supported on the CPU; use fp32 or bf16")
        return torch.float16
    return torch.float32
