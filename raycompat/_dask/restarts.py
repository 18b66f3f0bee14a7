"""Actor restarts that every handle sees: the restart state lives on the scheduler.

Ray's GCS restarts an actor whose process died (``max_restarts``) and every handle, in
any process, then reaches the new incarnation. Here the scheduler keeps, per restartable
actor, its current creation key (held by a synthetic client ``raycompat-actor-<id>``, so
the actor lives while it is registered), the restarts left, ``max_task_retries`` and the
recipe (pickled class and constructor arguments). A caller that finds the actor's worker
gone asks the scheduler (these functions run there, one at a time, so the check is
atomic): if the actor moved, it follows; if nobody is restarting it, it claims the
restart, re-creates the actor and commits the new key; otherwise it waits for the one
who did.
"""

from __future__ import annotations

from raycompat._dask.reference_plugin import release_holder

HOLDER = "raycompat-actor-"


def _registry(scheduler) -> dict:
    reg = getattr(scheduler, "_raycompat_actors", None)
    if reg is None:
        reg = scheduler._raycompat_actors = {}
    return reg


def register(dask_scheduler, actor_id, key, restarts_left, max_task_retries, recipe, job):
    _registry(dask_scheduler)[actor_id] = {
        "key": key, "restarts_left": restarts_left, "max_task_retries": max_task_retries,
        "recipe": recipe, "claimed": False, "job": job,
    }
    if key in dask_scheduler.tasks:  # a hosted actor's key comes later, wanted by the holder
        dask_scheduler.client_desires_keys(keys=[key], client=HOLDER + actor_id)


def claim(dask_scheduler, actor_id, old_key):
    """("dead"|"moved"|"wait"|"restart", key or recipe, max_task_retries)."""
    st = _registry(dask_scheduler).get(actor_id)
    if st is None:
        return ("dead", None, 0)
    if st["key"] != old_key:
        return ("moved", st["key"], st["max_task_retries"])
    if st["claimed"]:
        return ("wait", None, st["max_task_retries"])
    if st["restarts_left"] == 0:
        forget(dask_scheduler, actor_id)
        return ("dead", None, 0)
    if st["restarts_left"] > 0:
        st["restarts_left"] -= 1
    st["claimed"] = True
    return ("restart", st["recipe"], st["max_task_retries"])


def commit(dask_scheduler, actor_id, new_key):
    st = _registry(dask_scheduler).get(actor_id)
    if st is None:
        return False
    holder = HOLDER + actor_id
    dask_scheduler.client_desires_keys(keys=[new_key], client=holder)
    if st["key"] in dask_scheduler.tasks:
        dask_scheduler.client_releases_keys(keys=[st["key"]], client=holder)
    st.update(key=new_key, claimed=False)
    return True


def forget(dask_scheduler, actor_id):

    st = _registry(dask_scheduler).pop(actor_id, None)
    release_holder(dask_scheduler, HOLDER + actor_id)
    return st is not None


def forget_job(dask_scheduler, job):
    """Drop the restart state of a job's actors (its driver left or shut down)."""
    for actor_id, st in list(_registry(dask_scheduler).items()):
        if st["job"] == job:
            forget(dask_scheduler, actor_id)
