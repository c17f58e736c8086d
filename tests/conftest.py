import pytest

from dse.catalog import registry


@pytest.fixture
def hw():
    return lambda name: registry("hardware").get(name, "test")


@pytest.fixture
def wl():
    return lambda name: registry("workloads").get(name, "test")
