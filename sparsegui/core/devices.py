"""The devices a model can live on: the CPU, each CUDA GPU (name and memory) and Apple's MPS."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

from sparsegui.core.errors import DeviceError


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    name: str
    total_memory: int | None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _cpu_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def list_devices() -> list[DeviceInfo]:
    devices = [DeviceInfo("cpu", _cpu_name(), _cpu_memory())]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(DeviceInfo(f"cuda:{index}", props.name, int(props.total_memory)))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(DeviceInfo("mps", "Apple Metal (MPS)", None))
    return devices


def parse_device(spec: str | torch.device) -> torch.device:
    """Check that ``spec`` names a device that exists here; ``cuda`` means ``cuda:0``."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {str(spec)!r} (use cpu, cuda, cuda:N or mps)") from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(spec)!r}: CUDA is not available on this machine or in this torch build")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(spec)!r}: only {torch.cuda.device_count()} CUDA device(s) exist")
        return torch.device("cuda", index)
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device {str(spec)!r}: MPS is not available on this machine")
        return device
    raise DeviceError(f"device {str(spec)!r} is not supported (use cpu, cuda, cuda:N or mps)")
