"""The one RPC an actor's caller sends its actor's worker (Dask's ``actor_execute``)."""

from __future__ import annotations

import os

from distributed.core import send_recv


#: How long to keep trying to connect to an actor's worker. Dask's own connect retries a
#: refused connection for distributed.comm.timeouts.connect (30 s), which is how long a
#: call to an actor whose worker just died would hang before failing; the actor's worker
#: is a known, already-connected peer, so a refused connection means it is gone.
ACTOR_CONNECT_TIMEOUT = float(os.environ.get("RAYCOMPAT_ACTOR_CONNECT_TIMEOUT", "3"))


async def actor_rpc(client, address: str, actor_key: str, function: str, args: tuple, comm=None):
    """``actor_execute`` on the actor's worker through the client's connection pool."""
    if comm is None:
        comm = await client.rpc.connect(address, timeout=ACTOR_CONNECT_TIMEOUT)
    try:
        return await send_recv(comm=comm, op="actor_execute", actor=actor_key, function=function,
                               args=args, kwargs={})
    finally:
        client.rpc.reuse(address, comm)
