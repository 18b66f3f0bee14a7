"""Worker deaths: ``max_retries`` counts them per task, then ``WorkerCrashedError``
(Ray 2.60 measured: max_retries=0 -> 1 attempt, =1 -> 2 attempts, default -> retried)."""

import os

import pytest


def _attempts(path):
    return len(open(path).read()) if os.path.exists(path) else 0


@pytest.mark.parametrize("max_retries", [0, 1])
def test_worker_death_retried_max_retries_times(ray, tmp_path, max_retries):
    @ray.remote(max_retries=max_retries)
    def die(path):
        with open(path, "a") as f:
            f.write("x")
        os._exit(1)

    marker = str(tmp_path / "attempts")
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(die.remote(marker), timeout=120)
    assert _attempts(marker) == max_retries + 1


def test_worker_death_then_success_on_retry(ray, tmp_path):
    @ray.remote
    def die_once(path):
        if not os.path.exists(path):
            open(path, "w").write("x")
            os._exit(1)
        return "recovered"

    assert ray.get(die_once.remote(str(tmp_path / "once")), timeout=120) == "recovered"

    @ray.remote
    def still_works():
        return 1

    assert ray.get([still_works.remote() for _ in range(4)], timeout=120) == [1] * 4
