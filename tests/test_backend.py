"""Backend selection, device errors and seeding."""

import numpy
import pytest

import npalexnet
from npalexnet import backend


def test_get_array_module_is_numpy_for_host_arrays():
    assert backend.get_array_module(numpy.zeros(2), None) is numpy


def test_resolve_device_names_and_the_device_setting():
    assert backend.resolve_device("cpu") == "cpu"
    assert backend.resolve_device(" CPU ") == "cpu"
    with npalexnet.config.using(device="cpu"):
        assert backend.get_device() == "cpu"
    with npalexnet.config.using(device="auto"):
        assert backend.get_device() == ("cuda" if backend.cupy_available() else "cpu")
    with pytest.raises(ValueError, match="expected 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        backend.resolve_device("tpu")


def test_set_device_changes_the_default_and_none_goes_back_to_the_environment():
    try:
        assert npalexnet.set_device("cpu") == "cpu"
        assert backend.get_device() == "cpu" and npalexnet.config.defaults().device == "cpu"
    finally:
        npalexnet.set_device(None)
    assert npalexnet.config.defaults().device == npalexnet.config.environment_defaults().device


@pytest.mark.skipif(backend.cupy_available(), reason="a GPU is present")
def test_cuda_without_cupy_says_what_to_install(monkeypatch):
    with pytest.raises(RuntimeError, match="cupy-cuda12x"):
        backend.resolve_device("cuda")
    with npalexnet.config.using(device="cuda"):
        with pytest.raises(RuntimeError, match="device 'cuda' was requested"):
            backend.get_device()
    with pytest.raises(RuntimeError, match="device 'cuda:1' was requested"):
        backend.resolve_device("cuda:1")


def test_manual_seed_repeats_initialisation_and_the_library_stream():
    from npalexnet import random_streams
    npalexnet.manual_seed(3)
    a = npalexnet.nn.Linear(5, 4).weight.data
    r1 = random_streams.library_uniform((3,))
    npalexnet.manual_seed(3)
    b = npalexnet.nn.Linear(5, 4).weight.data
    numpy.testing.assert_array_equal(a, b)
    numpy.testing.assert_array_equal(r1, random_streams.library_uniform((3,)))
    npalexnet.manual_seed(4)
    assert not numpy.array_equal(a, npalexnet.nn.Linear(5, 4).weight.data)


def test_library_stream_state_round_trip():
    from npalexnet import random_streams
    npalexnet.manual_seed(1)
    random_streams.library_uniform((2, 2))
    state = random_streams.get_state()
    first = random_streams.library_uniform((4,))
    random_streams.set_state(state)
    numpy.testing.assert_array_equal(first, random_streams.library_uniform((4,)))


def test_get_array_module_knows_cupy_arrays_without_the_backend_having_imported_cupy():
    """A CuPy array is recognised by its type, even in a process where only the user imported CuPy."""
    class FakeCupyArray:
        __module__ = "cupy._core.core"
        __cuda_array_interface__ = {}

    import sys
    fake = type(sys)("cupy")
    previous = sys.modules.get("cupy")
    sys.modules["cupy"] = fake
    try:
        assert backend.get_array_module(FakeCupyArray()) is fake
        with pytest.raises(TypeError, match="different devices"):
            backend.get_array_module(FakeCupyArray(), numpy.zeros(1))
    finally:
        if previous is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = previous


def test_asnumpy_accepts_torch_tensors():
    import torch
    numpy.testing.assert_array_equal(backend.asnumpy(torch.arange(3)), numpy.arange(3))


def test_to_device_cpu_returns_numpy():
    assert isinstance(backend.to_device([1, 2], "cpu"), numpy.ndarray)


@pytest.mark.gpu
def test_module_round_trip_to_cuda_and_back():
    net = npalexnet.nn.Linear(3, 2)
    w = net.weight.data.copy()
    net.to("cuda")
    assert net.device == "cuda"
    net.to("cpu")
    numpy.testing.assert_array_equal(net.weight.data, w)
