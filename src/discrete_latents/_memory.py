"""How much memory a device has free now, for checks made before a large allocation."""

from __future__ import annotations

import os

import torch


def available_memory(device: torch.device) -> int | None:
    """Bytes free on ``device`` now, or ``None`` where that cannot be known.

    CUDA asks the driver; the CPU reads ``MemAvailable`` from ``/proc/meminfo`` (Linux: free
    memory plus caches the kernel can drop), else the physical memory size (other Unix systems),
    and takes the smaller of that and the room left under a cgroup v2 memory limit.
    """
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    free = _meminfo_available()
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            return None
    limit = _cgroup_room()  # a container may be allowed far less than the machine has
    return free if limit is None else min(free, limit)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as handle:
            for line in handle:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's cgroup (v2), or ``None`` without a limit."""
    try:
        with open("/sys/fs/cgroup/memory.max", "rb") as handle:
            limit = handle.read().strip()
        if limit == b"max":
            return None
        with open("/sys/fs/cgroup/memory.current", "rb") as handle:
            return max(0, int(limit) - int(handle.read().strip()))
    except (OSError, ValueError):
        return None
