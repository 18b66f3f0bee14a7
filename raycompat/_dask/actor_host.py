"""A worker process of its own for each actor (the embedded cluster), as Ray gives them.

On Ray nothing a task does to its process (``os._exit``, a segfault, a memory kill,
``ray.cancel(force=True)``) reaches an actor: each actor lives in a worker process of
its own. On Dask, actors live inside ordinary workers, next to tasks. So on the cluster
raycompat starts, each actor gets a *host*: a Dask worker process, from the pool of
``host_pool.py``, that

- runs no Dask tasks: it is a ``HostWorker``, which registers *paused* and never
  unpauses (Dask's scheduler gives paused workers no tasks);
- holds one actor, created by ``host_actor`` over ``Client.run`` (not as a Dask task,
  which a paused worker would never run) and registered with the scheduler as a key in
  memory on this worker, wanted by the creating client, as a Dask actor is;
- goes back to the pool once that key is forgotten (the actor's last handle is gone):
  Dask drops the shell, which stops the actor's threads. (Ray ends the process; a host
  is kept for the next actor instead, see ``host_pool.py``.) If the actor kills its
  process, its nanny starts a fresh one under the same name.

It still serves data (an actor's ``put`` stays in its process, and dies with it, as
Ray's objects die with their owner) and answers the actor RPCs of ``actor_rpc.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import os

from distributed import Worker
from distributed.core import Status
from distributed.worker import _worker_cvar

from raycompat._dask.state_plugin import TOPIC, actor_fields

#: Worker names of actor hosts; everything that counts CPUs or places tasks skips them.
NAME_PREFIX = "raycompat-actor-"


def is_host(name) -> bool:
    return isinstance(name, str) and name.startswith(NAME_PREFIX)


def task_workers(workers: dict) -> dict:
    """``scheduler_info()["workers"]`` without the actor hosts."""
    return {a: w for a, w in workers.items() if not is_host(w.get("name"))}


class HostWorker(Worker):
    """A Dask worker that is never *running* to the scheduler, only paused, so it is
    given no tasks (from registration on: Dask would set it running once started)."""

    def _set_status(self, value: Status) -> None:
        Worker.status.fset(self, Status.paused if value == Status.running else value)

    status = property(Worker.status.fget, _set_status)


async def dask_setup(worker) -> None:
    """Preload of an actor host."""
    worker.memory_manager.memory_pause_fraction = False  # never unpaused for memory either


async def host_actor(shell_class, key, cls_blob, args_blob, meta, dask_worker=None) -> bool:
    """On the host (through ``Client.run``): build the actor's shell (``shell_class``,
    ``actor_shell.Shell``) in a thread, then make ``key`` (known to the scheduler since
    ``.remote()``) this worker's actor."""
    ctx = contextvars.copy_context()
    ctx.run(_worker_cvar.set, dask_worker)  # get_worker()/get_client() in the actor's threads
    loop = asyncio.get_running_loop()
    _announce(dask_worker, meta, key, "PENDING_CREATION")
    shell = await loop.run_in_executor(None, ctx.run, shell_class, cls_blob, args_blob, dict(meta, hosted=True))
    # The shell first, so that a caller who hears of the key finds the actor here.
    dask_worker.state.actors[key] = shell
    if not await dask_worker.scheduler.raycompat_adopt(key=key, worker=dask_worker.address):
        del dask_worker.state.actors[key]  # every handle went while it was built
        _announce(dask_worker, meta, key, "DEAD", {"reason": "OUT_OF_SCOPE"})
        return False
    dask_worker.update_data(data={key: shell}, stimulus_id=f"raycompat-host-{key}")
    if shell.dead is not None:  # its __init__ raised (the calls will say so)
        _announce(dask_worker, meta, key, "DEAD", {"reason": "CREATION_TASK_FAILED", "error_message": str(shell.dead)})
    else:
        _announce(dask_worker, meta, key, "ALIVE")
    return True


def _announce(dask_worker, meta, key, state, death=None) -> None:
    """Tell the scheduler's actor table (``state_plugin.py``) how this actor stands."""
    msg = {"meta": actor_fields(meta), "state": state, "key": key, "pid": os.getpid()}
    if death is not None:
        msg["death"] = death
    dask_worker.log_event(TOPIC, msg)
