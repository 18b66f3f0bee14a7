"""Ray's actor API (``ray.actor``): ``ActorClass``, ``ActorHandle``, ``ActorMethod``,
``ray.method`` and ``exit_actor``. The mapping onto Dask is in ``raycompat/_dask/actor_*.py``.
"""

from __future__ import annotations

import inspect
from typing import Optional

from raycompat import exceptions as rex
from raycompat._dask import context as _context
from raycompat._dask.actor_errors import ActorExit
from raycompat.dag.class_node import ClassNode
from raycompat._dask import actor_api as _actor_api
from raycompat.dag.class_node import bind_actor_method
from raycompat._private.options import validate_actor_options, validate_num_returns

def method(*args, **kwargs):
    """``@ray.method(num_returns=N)``: per-method defaults for actor calls."""
    valid = {"num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
             "enable_task_events", "tensor_transport", "_generator_backpressure_num_objects"}

    def annotate(fn):
        if "num_returns" in kwargs:
            is_generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
            validate_num_returns(is_generator, kwargs["num_returns"], stacklevel=3)
            fn.__ray_num_returns__ = kwargs["num_returns"]
        if "concurrency_group" in kwargs:
            fn.__ray_concurrency_group__ = kwargs["concurrency_group"]
        return fn

    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    for k in kwargs:
        assert k in valid, f"Unexpected keyword argument to @ray.method: '{k}'"
    return annotate


def exit_actor():
    """End the current actor from inside one of its methods (Ray's ``exit_actor``)."""

    ctx = _context.current_task()
    if ctx is None or ctx.actor is None:
        raise TypeError("exit_actor API is called on a non-actor worker, a driver or a task.")
    raise ActorExit()


class _MethodMeta:
    __slots__ = ("name", "num_returns", "signature", "concurrency_group", "is_generator")

    def __init__(self, name, fn):
        self.name = name
        self.is_generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        # Ray's default: one return, or a stream for a generator method.
        self.num_returns = getattr(fn, "__ray_num_returns__", "streaming" if self.is_generator else 1)
        self.concurrency_group = getattr(fn, "__ray_concurrency_group__", None)
        try:
            sig = inspect.signature(fn)
            params = list(sig.parameters.values())[1:]  # drop self
            self.signature = sig.replace(parameters=params)
        except (TypeError, ValueError):
            self.signature = None


class ActorClass:
    """What ``@ray.remote`` makes of a class: call ``.remote()`` to start an actor."""

    def __init__(self, cls, options: dict):
        validate_actor_options(options, in_options=False)
        self.__ray_actor_class__ = cls
        self._default_options = dict(options)
        self._class_name = cls.__name__
        self._methods = {
            name: _MethodMeta(name, fn)
            for name, fn in inspect.getmembers(cls, predicate=lambda m: inspect.isfunction(m) or inspect.ismethod(m))
            if not name.startswith("__") or name in ("__call__",)
        }
        self._is_async = any(
            inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
            for _, fn in inspect.getmembers(cls, predicate=inspect.isfunction)
        )
        self._cls_blob = None
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__

    def __call__(self, *args, **kwargs):
        raise TypeError(
            "Actors cannot be instantiated directly. "
            f"Instead of '{self.__qualname__}()', use '{self.__qualname__}.remote()'."
        )

    def __init_subclass__(cls, **kwargs):
        raise rex.RayError("ActorClassInheritanceException: inheriting from an ActorClass is not allowed")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cls_blob"] = None
        return state

    def remote(self, *args, **kwargs) -> "ActorHandle":
        return self._remote(args, kwargs, self._default_options)

    def options(self, **options):
        validate_actor_options(options, in_options=True)
        merged = {**self._default_options, **options}
        parent = self

        class ActorOptionWrapper:
            def remote(self, *args, **kwargs):
                return parent._remote(args, kwargs, merged)

            def bind(self, *args, **kwargs):
                return ClassNode(parent, args, kwargs, merged)

        return ActorOptionWrapper()

    def bind(self, *args, **kwargs):
        """Ray DAG: a ``ClassNode`` (``raycompat.dag``); each ``execute()`` starts an actor."""

        return ClassNode(self, args, kwargs, self._default_options)

    def _remote(self, args, kwargs, options) -> "ActorHandle":
        init = getattr(self.__ray_actor_class__, "__init__", None)
        if init is not None and init is not object.__init__:
            try:
                sig = inspect.signature(init)
                sig.replace(parameters=list(sig.parameters.values())[1:]).bind(*args, **kwargs)
            except (TypeError, ValueError) as e:
                if isinstance(e, TypeError):
                    raise TypeError(str(e)) from None
        return ActorHandle._from_record(_actor_api.create(self, args, kwargs, options))


class ActorMethod:
    """``handle.method``: call ``.remote()`` on it."""

    def __init__(self, handle: "ActorHandle", meta: _MethodMeta, num_returns=None):
        self._handle = handle
        self._meta = meta
        self._num_returns = meta.num_returns if num_returns is None else num_returns

    def __call__(self, *args, **kwargs):
        raise TypeError(
            "Actor methods cannot be called directly. Instead "
            f"of running 'object.{self._meta.name}()', try "
            f"'object.{self._meta.name}.remote()'."
        )

    def remote(self, *args, **kwargs):
        if self._meta.signature is not None:
            try:
                self._meta.signature.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(str(e)) from None

        return _actor_api.call(self._handle, self._meta.name, args, kwargs, self._num_returns)

    def options(self, **options):
        if "num_returns" in options:
            validate_num_returns(self._meta.is_generator, options["num_returns"], stacklevel=3)
        num_returns = options.get("num_returns", self._num_returns)
        return ActorMethod(self._handle, self._meta, num_returns)

    def bind(self, *args, **kwargs):
        """Ray DAG: a ``ClassMethodNode`` calling this actor (``raycompat.dag``)."""

        return bind_actor_method(self._handle, self._meta.name, self._meta.signature, self._num_returns, args, kwargs)


_BUILTIN_METHODS = ("__ray_ready__", "__ray_call__", "__ray_terminate__")


class ActorHandle:
    """A handle to an actor (Ray's ``ActorHandle``): picklable, hashable by actor id."""

    def __init__(self, actor_id: str, creation_future, class_name: str, methods: dict, is_async: bool,
                 name: Optional[str] = None, namespace: Optional[str] = None, concurrent: bool = False):
        self._actor_id = actor_id
        self._creation = creation_future
        self._class_name = class_name
        self._methods = methods
        self._is_async = is_async
        self._name = name
        self._namespace = namespace
        self._caller = None  # this process's channel to the actor, made on first call
        #: Calls may run side by side (async, max_concurrency > 1, concurrency groups).
        self._concurrent = concurrent

    def __getattr__(self, item):
        if item.startswith("_") and item not in _BUILTIN_METHODS:
            raise AttributeError(f"'ActorHandle' object has no attribute '{item}'")
        meta = self._methods.get(item)
        if meta is None and item in _BUILTIN_METHODS:
            meta = _MethodMeta.__new__(_MethodMeta)
            meta.name, meta.num_returns, meta.signature, meta.concurrency_group = item, 1, None, None
            meta.is_generator = False
        if meta is None:
            raise AttributeError(f"'ActorHandle' object has no attribute '{item}'")
        return ActorMethod(self, meta)

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self):
        return hash(self._actor_id)

    def __repr__(self):
        return f"Actor({self._class_name}, {self._actor_id})"

    @classmethod
    def _from_record(cls, record) -> "ActorHandle":
        """The handle for an engine's ``actor_api.ActorRecord``."""
        handle = cls(record.actor_id, record.creation, record.class_name, record.methods, record.is_async,
                     record.name, record.namespace, record.concurrent)
        handle._caller = record.caller
        return handle

    def __reduce__(self):
        return (_rebuild_handle, _actor_api.handle_state(self))

    def _actor_id_hex(self):
        return self._actor_id


__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"]


def _rebuild_handle(*state) -> ActorHandle:
    """Unpickling a handle: this process now holds the actor's current incarnation."""
    return ActorHandle._from_record(_actor_api.record_from_state(*state))
