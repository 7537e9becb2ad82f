"""keep_freed_buffers, observed through glibc's own accounting in fresh processes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

MiB = 1024 * 1024

# Frees 8 MiB of body-sized buffers three times over, then reports what the heap kept.
PROBE = """
import ctypes, json, sys
from tusd_py.malloc import keep_freed_buffers

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_buffers() if sys.argv[1] == "apply" else None
for _ in range(3):
    buffers = [bytes(256 * 1024) for _ in range(32)]
    del buffers
print(json.dumps({"applied": applied, "free_heap": libc.mallinfo2().fordblks}))
"""


def probe(mode: str, **env: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env={**environment, **env}, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_freed_body_buffers_stay_in_the_process() -> None:
    untouched = probe("leave")
    kept = probe("apply")

    assert kept["applied"] is True
    assert isinstance(kept["free_heap"], int) and kept["free_heap"] >= 8 * MiB
    # glibc's defaults hand most of them back to the kernel: the case this is about.
    assert isinstance(untouched["free_heap"], int) and untouched["free_heap"] < 4 * MiB


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
    ],
)
def test_settings_from_the_environment_win(env: dict[str, str]) -> None:
    result = probe("apply", **env)

    assert result["applied"] is False
    assert isinstance(result["free_heap"], int) and result["free_heap"] < 4 * MiB
