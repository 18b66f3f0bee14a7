"""Keep Dask's worker processes from re-running the user's script.

Dask starts worker processes with multiprocessing's ``spawn``, which re-imports the
parent's ``__main__`` script in each child. Ray programs (the seed tutorial among them)
call ``ray.init()`` at the top level of an unguarded script, so every spawned worker
would run the whole program again. Ray never re-imports ``__main__``: its workers are
fresh interpreters, and functions from ``__main__`` travel by value (cloudpickle), as
they do in raycompat. So for processes named as Dask names its workers, we drop the
"import the main module" step from the spawn preparation data; every other process
the program spawns is left alone.
"""

from __future__ import annotations

import multiprocessing.spawn as _spawn

_DASK_WORKER_PROCESS_NAME = "Dask Worker process"
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    original = _spawn.get_preparation_data

    def get_preparation_data(name):
        data = original(name)
        if str(name).startswith(_DASK_WORKER_PROCESS_NAME):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data.__wrapped__ = original
    _spawn.get_preparation_data = get_preparation_data
