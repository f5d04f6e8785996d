"""The one configuration: defaults from the environment (read once, typos rejected), scoped overrides."""

import os
import subprocess
import sys

import pytest

from npalexnet import config


def test_the_defaults():
    s = config.Settings()
    assert (s.fast_paths, s.numba, s.conv, s.cuda_kernels, s.buffer_pool, s.device, s.grad_enabled) == \
        (True, True, "auto", True, False, "auto", True)


@pytest.mark.parametrize("environ, expected", [
    ({"NPALEXNET_NUMBA": "0"}, {"numba": False}),
    ({"NPALEXNET_NUMBA": " Off "}, {"numba": False}),
    ({"NPALEXNET_CUDA_KERNELS": "yes"}, {"cuda_kernels": True}),
    ({"NPALEXNET_CUDA_KERNELS": "0"}, {"cuda_kernels": False}),
    ({"NPALEXNET_CONV": "Winograd"}, {"conv": "winograd"}),
    ({"NPALEXNET_DEVICE": "cuda:1"}, {"device": "cuda:1"}),
    ({"NPALEXNET_FAST_PATHS": "false", "NPALEXNET_BUFFER_POOL": "1"}, {"fast_paths": False, "buffer_pool": True}),
    ({"NPALEXNET_CONV": "", "OTHER": "x"}, {}),
])
def test_one_parser_reads_every_variable(environ, expected):
    assert config.parse_environment(environ) == expected


@pytest.mark.parametrize("variable, value", [("NPALEXNET_NUMBA", "2"), ("NPALEXNET_CONV", "winogard"),
                                             ("NPALEXNET_CUDA_KERNELS", "maybe"), ("NPALEXNET_DEVICE", "tpu")])
def test_a_typo_is_rejected_naming_the_variable_and_the_choices(variable, value):
    with pytest.raises(ValueError, match=f"{variable}={value!r}: expected one of"):
        config.parse_environment({variable: value})


def test_the_environment_is_read_once_at_import():
    """A bad value stops the import with one line; a later change of the variable changes nothing."""
    env = {**os.environ, "NPALEXNET_CONV": "winogard"}
    result = subprocess.run([sys.executable, "-c", "import npalexnet"], env=env, capture_output=True, text=True)
    expected = "NPALEXNET_CONV='winogard': expected one of auto, im2col, winograd"
    assert result.returncode != 0 and expected in result.stderr
    code = ("import os, npalexnet; from npalexnet import config; os.environ['NPALEXNET_NUMBA'] = '0'; "
            "assert config.current().numba is True")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "NPALEXNET_NUMBA": "1"}, check=True)


def test_using_is_scoped_nests_and_restores_on_error():
    assert config.current().numba is True
    with pytest.raises(RuntimeError):
        with config.using(numba=False):
            with config.using(conv="im2col") as inner:
                assert inner.numba is False and inner.conv == "im2col"
                assert config.current() is inner
            assert config.current().conv == "auto"
            raise RuntimeError("boom")
    assert config.current().numba is True


def test_reference_turns_every_fast_path_off():
    with config.reference():
        assert config.current().fast_paths is False


@pytest.mark.parametrize("changes, message", [({"conv": "fft"}, "conv must be one of"), ({"numba": 1}, "True or False"),
                                              ({"devices": "cpu"}, "unexpected keyword")])
def test_bad_settings_are_rejected(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        with config.using(**changes):
            pass


def test_set_defaults_changes_what_holds_outside_every_block():
    before = config.defaults()
    try:
        config.set_defaults(conv="im2col")
        assert config.current().conv == "im2col"
        with config.using(conv="winograd"):
            assert config.current().conv == "winograd"
    finally:
        config.set_defaults(conv=before.conv)
    assert config.current().conv == before.conv
