"""dse.allocator: glibc keeps freed array memory for reuse, unless the user set the thresholds."""
import ctypes
import subprocess
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


@pytest.mark.parametrize("tunables", ["glibc.malloc.mmap_threshold=131072", "glibc.malloc.trim_threshold=0:x=1"])
def test_glibc_tunables_are_left_alone(monkeypatch, tunables):
    monkeypatch.setenv("GLIBC_TUNABLES", tunables)
    assert allocator.keep_freed_memory() is False


def test_import_leaves_the_allocator_alone_until_a_population_runs():
    """`import dse` changes nothing in the host process; the first `evaluate_many` sets the thresholds."""
    probe = ("import dse, dse.allocator as a; before = a.keep_freed_memory_once.cache_info().currsize; "
             "dse.evaluate_many([dict(workload='llama-3-8b', hardware='h100', mode='infer')]); "
             "print(before, a.keep_freed_memory_once.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "1"]
