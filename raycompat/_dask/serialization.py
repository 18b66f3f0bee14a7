"""Values travel through Dask sealed: pickled once, whole, by cloudpickle protocol 5.

Ray pickles an object once when it enters the object store and hands every reader a
fresh copy; large buffers (numpy) travel out of band without copies. Dask instead
walks Python containers element by element (a 10-million-element list takes minutes
to scatter), and resolves futures nested inside them. So every value raycompat hands
to Dask (``put``, task arguments, task results) is a ``Sealed``: the pickle bytes plus
the out-of-band buffers, registered with Dask's serializer as raw frames, so Dask
moves bytes and never looks inside.
"""

from __future__ import annotations

import pickle
import zlib

import cloudpickle
from dask.sizeof import sizeof
from distributed.protocol.serialize import dask_deserialize, dask_serialize

from raycompat._dask import references

_PLAIN = frozenset({type(None), bool, int, float, str, bytes})

#: Buffers smaller than this stay in band: out-of-band frames cost a few microseconds each.
_MIN_OOB_BYTES = 64 * 1024


class Sealed:
    """An opaque pickled value: ``payload`` bytes plus protocol-5 ``buffers``."""

    __slots__ = ("payload", "buffers")

    def __init__(self, payload, buffers=()):
        self.payload = payload
        self.buffers = buffers

    @classmethod
    def seal(cls, value, copy: bool = False) -> "Sealed":
        """Pickle ``value``; ``copy`` detaches large buffers from the caller's objects
        (``put`` must not see later mutations; a finished task's result need not)."""
        if type(value) in _PLAIN:  # the common tiny result: skip building a cloudpickler
            return cls(pickle.dumps(value, protocol=5), ())
        buffers = []

        def keep_large(buf: pickle.PickleBuffer):
            if buf.raw().nbytes >= _MIN_OOB_BYTES:
                buffers.append(buf)
                return False  # out of band
            return True  # in band

        payload = cloudpickle.dumps(value, protocol=5, buffer_callback=keep_large)
        if copy:
            buffers = [bytes(b.raw()) for b in buffers]
        return cls(payload, tuple(buffers))

    def unseal(self):
        """A fresh copy of the value (each call unpickles again, as each Ray get does).

        Large buffers are shared, read-only, as Ray's zero-copy numpy arrays are. Refs
        inside are held by this process before this returns (``references.rebinding``)."""
        with references.rebinding():
            return pickle.loads(self.payload, buffers=[memoryview(b).toreadonly() for b in self.buffers])

    @property
    def nbytes(self) -> int:
        return len(self.payload) + sum(memoryview(b).nbytes for b in self.buffers)

    def __reduce__(self):
        # Plain pickling (e.g. Dask spilling to disk): keep the buffers in band.
        return (Sealed, (self.payload, tuple(bytes(memoryview(b)) for b in self.buffers)))

    def __repr__(self):
        return f"<Sealed {self.nbytes} bytes>"


@dask_serialize.register(Sealed)
def _serialize_sealed(s: Sealed):
    frames = [s.payload, *(memoryview(b) for b in s.buffers)]
    return {"nbuffers": len(s.buffers)}, frames


@dask_deserialize.register(Sealed)
def _deserialize_sealed(header, frames):
    return Sealed(frames[0], tuple(frames[1:]))


@sizeof.register(Sealed)
def _sizeof_sealed(s: Sealed) -> int:
    return s.nbytes + 64


class Deflated:
    """A pickle blob (or a name) compressed so that its bytes do not spell ``__main__``.

    distributed pickles a task's spec with plain pickle, and re-pickles it with
    cloudpickle's pure-Python pickler whenever the bytes contain ``b"__main__"``
    (``distributed.protocol.pickle.dumps``): once on the client and once more on the
    scheduler for every task. A function defined in the user's script is pickled by
    value and always contains that name (and in a notebook or ``python -c`` so does its
    Ray name, ``__main__.f``), so each of its calls paid the slow path twice.
    Compressing the blob once per function hides it; the worker inflates a function
    once (``worker_task._load_function`` caches by digest)."""

    __slots__ = ("data", "text")

    def __init__(self, data: bytes, text: bool = False):
        self.data = data
        self.text = text

    def __reduce__(self):
        return (Deflated, (self.data, self.text))


def hide_main(blob):
    """``blob`` (bytes, or a str), or a ``Deflated`` of it when it contains ``__main__``."""
    if isinstance(blob, str):
        return Deflated(zlib.compress(blob.encode(), 1), True) if "__main__" in blob else blob
    return Deflated(zlib.compress(blob, 1)) if b"__main__" in blob else blob


def inflate(blob):
    """What ``hide_main`` was given."""
    if type(blob) is not Deflated:
        return blob
    data = zlib.decompress(blob.data)
    return data.decode() if blob.text else data
