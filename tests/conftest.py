"""Test setup: 4 CPU devices (so sharding is exercised) before jax is imported anywhere."""

import os
import sys

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
os.environ.setdefault("MTL_JAX_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # configs/ is imported as a package from the repo root
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


@pytest.fixture(scope="session")
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"{SHARED_DATA} is not present")
    return SHARED_DATA
