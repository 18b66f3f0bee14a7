"""``ray.util.joblib``: run joblib's ``Parallel`` on the cluster as the ``"ray"`` backend.

Ray 2.60's ``register_ray()`` registers a backend that is joblib's multiprocessing
backend with ``ray.util.multiprocessing.Pool`` in place of ``multiprocessing.Pool``: each
``Parallel`` call starts a Pool of ``n_jobs`` actors (``n_jobs=-1``: the cluster's CPU
count; more than the cluster has: ``ValueError``), joblib sends its batches through
``Pool.apply_async``, ``n_jobs=1`` runs in the driver, ``timeout=`` raises
``multiprocessing.TimeoutError``, ``return_as="generator"`` is refused, and
``parallel_config(backend="ray", ray_remote_args={...})`` configures the actors.

This backend does the same over raycompat's Pool (``raycompat.util.multiprocessing``), so
Ray's behaviours above, and anything the function does with the Ray API, hold unchanged.
Two departures: it drives the Pool directly, where Ray assigns
``joblib.pool.PicklingPool.__bases__`` (which turns joblib's own multiprocessing backend
into Ray's for the rest of the process); and negative ``n_jobs`` count back from the
cluster's CPUs (``-2``: all but one), where Ray counts them from the driver machine's.

joblib's own Dask backend bound to raycompat's Dask client would also work, and would
show joblib's batches as plain Dask tasks; it was not chosen because its tasks bypass
raycompat (no CPU ledger, no task context, so ``ray.get`` inside them does not give its
worker thread back) and it behaves differently from Ray's backend (``n_jobs`` is advisory,
generators are accepted, ``ray_remote_args`` has no meaning).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    PoolManagerMixin,
    SequentialBackend,
)
from joblib.parallel import register_parallel_backend

import raycompat as ray
from raycompat.util.multiprocessing import Pool


def _cluster_cpus() -> int:
    if not ray.is_initialized():
        ray.init()
    return int(ray.cluster_resources().get("CPU", 0))


class RayBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    """joblib backend running each ``Parallel`` call's batches on a Pool of actors.

    ``ray_remote_args`` (from ``parallel_config``) configures the Pool's actors.
    """

    supports_retrieve_callback = True
    supports_return_generator = False  # as Ray's (joblib's multiprocessing backend)

    def __init__(self, nesting_level: Optional[int] = None, inner_max_num_threads: Optional[int] = None,
                 ray_remote_args: Optional[Dict[str, Any]] = None, **kwargs):
        self.ray_remote_args = ray_remote_args
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs)

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(_cluster_cpus() + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None,
                  ray_remote_args: Optional[Dict[str, Any]] = None, **pool_kwargs):
        # pool_kwargs are joblib's memmapping and multiprocessing-context settings, which
        # have no meaning for actors.

        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._pool = Pool(
            n_jobs, ray_remote_args=ray_remote_args if ray_remote_args is not None else self.ray_remote_args
        )
        self.parallel = parallel
        return n_jobs

    def terminate(self):
        super().terminate()
        self.reset_batch_stats()


def register_ray():
    """Register the ``"ray"`` joblib backend (use it with ``joblib.parallel_config(backend="ray")``)."""
    register_parallel_backend("ray", RayBackend)


__all__ = ["register_ray"]
