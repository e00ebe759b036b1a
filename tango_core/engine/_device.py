"""Device choice, mixed precision, thread settings and the system info event."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError

AMP_MODES = ("auto", "off", "bf16", "fp16")
_threads_configured = False


def select_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError("train", "device", f"{device!r} is not a device", "use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train", "device", "CUDA was asked for but no CUDA GPU is visible", "use device='cpu'")
    return dev


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16 / AMX; aarch64 FEAT_BF16


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True on CPUs with native bf16 arithmetic (AVX512-BF16, AMX or Arm BF16), where bf16 autocast
    pays off.  oneDNN's own check (``_is_mkldnn_bf16_supported``) is true on any AVX-512 CPU, where
    bf16 is emulated and slower than fp32 (Skylake / Cascade Lake, common in clouds and Colab), so
    the CPU's flags are read instead; where they cannot be read, the answer is no."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return any(flag in NATIVE_BF16_FLAGS for flag in value.split())
    return False


def amp_dtype(device: torch.device, amp: str | bool = "auto") -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: full fp32)."""
    if amp is True:
        amp = "auto"
    if amp is False or amp is None:
        amp = "off"
    if amp not in AMP_MODES:
        raise ConfigError("train", "amp", f"{amp!r} is not a precision mode", f"use one of {list(AMP_MODES)}")
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return torch.float16
    if device.type == "cpu":
        if amp == "fp16":
            raise ConfigError("train", "amp", "fp16 training is not supported on CPU", "use amp='bf16' or 'off'")
        if amp == "bf16" or cpu_has_bf16():
            return torch.bfloat16
        return None
    return None


def configure_threads(threads: int | None = None) -> int:
    """Set torch's thread pools once per process (changing them later is slow or refused)."""
    global _threads_configured
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(int(threads))
    if not _threads_configured:
        try:
            torch.set_num_interop_threads(1)  # one training step at a time: inter-op threads only compete
        except RuntimeError:
            pass  # already started by an earlier parallel region: keep what is there
        _threads_configured = True
    return torch.get_num_threads()


def system_info(device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
    import psutil

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "ram_bytes": psutil.virtual_memory().total,
        "amp": str(dtype).replace("torch.", "") if dtype is not None else "off",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory)
    return info


def _cpu_name() -> str:
    try:  # platform.processor() is empty on most Linux systems
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
