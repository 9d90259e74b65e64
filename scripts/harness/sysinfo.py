"""Where a measurement was taken: device, versions, commit, command line, machine load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_info(device: str) -> dict:
    import torch

    info = {
        "requested": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        info["cpu_model"] = next(
            ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln
        )
    except (OSError, StopIteration):
        pass
    info["env"] = {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS") if os.environ.get(k)}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    try:
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def versions() -> dict:
    """Versions of Python, the platform and the packages that set the numbers (read from package metadata)."""
    import numpy
    import torch

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__}
    out["numpy"] = numpy.__version__
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mediapipe", "bpy", "PyMCubes", "trimesh"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not available"
    return out


def stamp(device: str = "cpu") -> dict:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "git_commit": git_commit(),
        "device": device_info(device),
        "versions": versions(),
    }
