"""Test-suite settings shared by every test module."""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop JAX's compiled executables after each test module.

    The suite compiles hundreds of programs (every model, method and size); keeping them all
    made one long run grow past 6 GB and crash inside the XLA compiler. Modules do not share
    compiled code that matters for speed, so clearing between modules costs little.
    """
    yield
    jax.clear_caches()
