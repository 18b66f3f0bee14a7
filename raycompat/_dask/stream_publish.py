"""The worker side of Ray's generators: publishing each item as it is yielded (see
``streaming.py`` for the whole mapping). An item is sealed, stored in this worker's memory
and registered with the scheduler as wanted by the consumer's client, then announced as
a Dask event on the consumer's topic, ``raycompat-stream-<client id>``."""

from __future__ import annotations

import asyncio
import time

from raycompat._dask import interrupts, references
from raycompat._dask.keys import new_key
from raycompat._dask.serialization import Sealed
from raycompat import exceptions as rex
from raycompat._dask.results import StreamEnd

TOPIC_PREFIX = "raycompat-stream-"


class Publisher:
    """Stores the items one call yields and announces them to the consumer."""

    def __init__(self, consumer_id: str, stream_key: str, name: str):
        from distributed import get_client, get_worker

        self.worker = get_worker()
        self.client = get_client()
        references.plugin_present(self.client)  # asked here: _store runs on the event loop
        self.consumer_id = consumer_id
        self.stream_key = stream_key
        self.name = name
        self.topic = TOPIC_PREFIX + consumer_id
        self.count = 0

    @staticmethod
    def _seal(item):
        with references.collecting() as inner:
            return Sealed.seal(item, copy=True), inner

    def _store_sync(self, item) -> None:
        from distributed.utils import sync

        sync(self.worker.loop, self._store, *self._seal(item))

    async def publish_async(self, item) -> None:
        """From a thread with its own event loop (an async actor's)."""
        sealed, inner = self._seal(item)
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._store(sealed, inner), self.worker.loop.asyncio_loop)
        )

    def publish(self, item) -> None:
        """From a task or actor thread (a task's ``ray.cancel`` waits till it is stored)."""
        with interrupts.uninterruptible():
            self._store_sync(item)

    async def _store(self, sealed: Sealed, inner: list) -> None:
        key = new_key(f"{self.name}-item")
        await store_value(self.worker, key, sealed, self.consumer_id)
        # Refs inside the item live as long as it does (on the loop: the stream's order
        # alone keeps the contents ahead of this process's own releases).
        references.contain(self.client, key, inner)
        self.worker.log_event(self.topic, (self.stream_key, self.count, key))
        self.count += 1


async def store_value(worker, key: str, sealed: Sealed, owner: str) -> None:
    """Store ``sealed`` on this worker as the Dask key ``key``, wanted by the client
    ``owner`` (as ``scatter`` would from that client)."""
    from dask.sizeof import sizeof

    worker.update_data(data={key: sealed}, stimulus_id=f"raycompat-store-{time.time()}")
    await worker.scheduler.update_data(who_has={key: [worker.address]}, nbytes={key: sizeof(sealed)}, client=owner)


def run_streaming(gen, publisher: Publisher, is_cancelled) -> StreamEnd:
    """Drive a sync generator to its end, publishing each item (task and actor threads)."""

    try:
        for item in gen:
            publisher.publish(item)
            if is_cancelled():
                gen.close()
                raise rex.TaskCancelledError(publisher.stream_key)
    except KeyboardInterrupt:  # ray.cancel: the generator's cleanup runs now, not at GC
        gen.close()
        raise
    return StreamEnd(publisher.count)


async def run_streaming_async(agen, publisher: Publisher, is_cancelled) -> StreamEnd:
    if not hasattr(agen, "__anext__"):  # a sync generator method of an async actor
        for item in agen:
            await publisher.publish_async(item)
            if is_cancelled():
                raise rex.TaskCancelledError(publisher.stream_key)
        return StreamEnd(publisher.count)
    async for item in agen:
        await publisher.publish_async(item)
        if is_cancelled():
            await agen.aclose()
            raise rex.TaskCancelledError(publisher.stream_key)
    return StreamEnd(publisher.count)
