"""Warn once about Ray Data arguments raycompat.data accepts but does not act on (a
filesystem object, partitioning, file naming...), as raycompat warns about task options
Dask has no equivalent for: the program runs, and says what differs."""

from __future__ import annotations

import warnings

_warned: set = set()


def warn_ignored(api: str, kwargs: dict) -> None:
    """Warn (once per API and argument) about the arguments in ``kwargs`` that are set."""
    used = sorted(k for k, v in kwargs.items() if v is not None and (api, k) not in _warned)
    if not used:
        return
    _warned.update((api, k) for k in used)
    warnings.warn(
        f"raycompat.data ignores these {api} arguments: {', '.join(used)}.",
        UserWarning,
        stacklevel=3,
    )
