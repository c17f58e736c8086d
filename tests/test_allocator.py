"""dse.allocator: glibc keeps freed array memory for reuse, unless the user set the thresholds."""
import ctypes
import sys

import pytest

from dse import allocator

glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.mark.skipif(not glibc, reason="the thresholds are glibc's")
def test_thresholds_set_to_glibc_ceilings(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert allocator.keep_freed_memory() is True
    assert (allocator.MMAP_THRESHOLD_MAX, allocator.TRIM_THRESHOLD) == (32 * 2**20, 64 * 2**20)


@pytest.mark.parametrize("variable", ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"])
def test_user_settings_are_left_alone(monkeypatch, variable):
    monkeypatch.setenv(variable, "131072")
    assert allocator.keep_freed_memory() is False
