"""Under ``mpiexec -n 2`` (skipped without mpi4py/mpiexec): equivalence with one process, aborts, setup errors.

Each test starts the ranks in a subprocess with a hard timeout, so a rank
that hangs fails the test instead of the CI run.
"""

import json

import pytest

from .helpers import run_mpi

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi") / "equivalence.json"
    result, _ = run_mpi(2, "equivalence", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(out.read_text())


def test_two_ranks_train_like_one_process(equivalence):
    """Same global batch (7, uneven 4/3 split), same seeds, dropout on, 6 SGD steps, float64."""
    assert equivalence["size"] == 2
    assert equivalence["moved"] > 1e-3                    # training changed the weights
    assert equivalence["max_rel_error"] <= 1e-10, equivalence["errors"]


def test_two_ranks_take_sharpness_aware_steps_like_one_process(equivalence):
    assert equivalence["sam_vs_plain"] > 1e-6                # SAM trained other weights than plain steps
    assert equivalence["sam_max_rel_error"] <= 1e-10


def test_parameters_are_bit_identical_across_ranks(equivalence):
    assert equivalence["identical_across_ranks"]


def test_evaluation_sums_over_ranks(equivalence):
    single, dist = equivalence["eval_single"], equivalence["eval_distributed"]
    assert dist[2] == single[2] == 20 and dist[1] == single[1]
    assert abs(dist[0] - single[0]) <= 1e-12 * abs(single[0])


def test_resume_state_and_batchnorm_statistics(equivalence):
    assert equivalence["broadcast_tree_ok"]
    assert equivalence["bn_running_mean_error"] < 1e-14


def test_an_exception_on_one_rank_ends_both():
    result, seconds = run_mpi(2, "crash", "-", timeout=60)
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stderr and "[rank 1/2]" in result.stderr
    assert seconds < 60


def test_mismatched_ranks_exit_cleanly_with_one_message():
    result, _ = run_mpi(2, "mismatch", "-", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("the ranks disagree") == 1
    assert "data: rank 0 has '/data/path-0', rank 1 has '/data/path-1'" in result.stderr


def test_missing_mpi4py_is_reported_once_and_both_ranks_exit():
    result, _ = run_mpi(2, "equivalence", "-", timeout=60, env_extra={"NPALEXNET_TEST_BLOCK_MPI4PY": "1"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("--distributed needs mpi4py") == 1
