"""Ray's exception hierarchy (``ray.exceptions`` in Ray 2.60), names, bases and messages.

Every class a Ray program can catch is defined here with Ray's bases, so ``except
ray.exceptions.X`` keeps working after the import swap. The engine layer raises them
(``raycompat/_dask/results.py``'s ``translate_error`` maps Dask's failures onto them).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Optional

logger = logging.getLogger(__name__)

# colorama's Fore.CYAN and Fore.RESET, as Ray's task-error header uses them.
_CYAN = "\x1b[36m"
_RESET_FOREGROUND = "\x1b[39m"


class RayError(Exception):
    """Super class of all ray exception types."""


def _portable_cause(cause, traceback_str: str):
    """The cause a task error can carry to another process, as Ray decides it: the
    exception itself; Ray's ``UnserializableException`` when it pickles but cannot be
    rebuilt; a ``RayError`` naming it (Ray's text) when it does not pickle at all."""
    import pickle

    import cloudpickle

    try:
        blob = cloudpickle.dumps(cause)
    except Exception as e:  # noqa: BLE001 - any pickling failure
        err_type = f"{cause.__class__.__module__}.{cause.__class__.__name__}"
        return RayError(
            f"Exception {err_type} isn't serializable: {e}.\n"
            f"Original exception details:\n{traceback_str}"
        )
    try:
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - any unpickling failure
        return UnserializableException(traceback_str)
    return cause


class CrossLanguageError(RayError):
    """Raised from another language."""


class TaskCancelledError(RayError):
    """Raised when this task is cancelled."""

    def __init__(self, task_id=None, error_message: Optional[str] = None):
        self.task_id = task_id
        self.error_message = error_message

    def __reduce__(self):
        return (type(self), (self.task_id, self.error_message))

    def __str__(self):
        msg = ""
        if self.task_id:
            msg = "Task: " + str(self.task_id) + " was cancelled. "
        if self.error_message:
            msg += self.error_message
        return msg


class RayTaskError(RayError):
    """Indicates that a task threw an exception during execution.

    ``ray.get`` raises ``as_instanceof_cause()`` of it: an instance of a class named
    ``RayTaskError(UserError)`` that inherits from both this class and the user's own
    exception class, so ``except UserError`` keeps working.
    """

    def __init__(
        self,
        function_name,
        traceback_str,
        cause,
        proctitle=None,
        pid=None,
        ip=None,
        actor_repr=None,
        actor_id=None,
    ):
        self.proctitle = proctitle or f"ray::{function_name}"
        self.pid = pid or os.getpid()
        self.ip = ip or _node_ip()
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.actor_repr = actor_repr
        self._actor_id = actor_id
        self.cause = _portable_cause(cause, traceback_str)
        self.args = (function_name, traceback_str, self.cause, proctitle, pid, ip)
        assert traceback_str is not None

    def __reduce__(self):
        return (
            RayTaskError,
            (
                self.function_name,
                self.traceback_str,
                self.cause,
                self.proctitle,
                self.pid,
                self.ip,
                self.actor_repr,
                self._actor_id,
            ),
            {"_dask_key": getattr(self, "_dask_key", None)},
        )

    def make_dual_exception_instance(self) -> "RayTaskError":
        if sys.version_info >= (3, 11) and isinstance(self.cause, ExceptionGroup):  # noqa: F821
            return self._make_dual(group=True)
        return self._make_dual(group=False)

    def _make_dual(self, group: bool) -> "RayTaskError":
        cause_cls = self.cause.__class__
        error_msg = str(self)

        class cls(RayTaskError, cause_cls):
            if group:
                def __new__(klass, cause):
                    return super().__new__(klass, cause.message, cause.exceptions)

            def __init__(self, cause):
                self.cause = cause
                self._ray_task_error_args = (cause,)

            @property
            def args(self):
                return self._ray_task_error_args

            @args.setter
            def args(self, value):
                self._ray_task_error_args = value

            def __reduce__(self):
                return (cls, self._ray_task_error_args)

            def __getattr__(self, name):
                if name == "cause":
                    raise AttributeError(name)
                return getattr(self.cause, name)

            def __str__(self):
                return error_msg

        name = f"RayTaskError({cause_cls.__name__})"
        cls.__name__ = name
        cls.__qualname__ = name
        return cls(self.cause)

    def as_instanceof_cause(self):
        """Returns an exception that is an instance of the cause's class too.

        If the cause class cannot be subclassed, logs a warning and returns ``self``.
        """
        cause_cls = self.cause.__class__
        if issubclass(RayTaskError, cause_cls):
            return self
        try:
            return self.make_dual_exception_instance()
        except Exception as e:  # noqa: BLE001 - mirrors Ray
            logger.warning(
                f"User exception type {type(self.cause)} in RayTaskError can't"
                " be subclassed! This exception is raised as"
                " RayTaskError only. You can use `ray_task_error.cause` to"
                f" access the user exception. Failure in subclassing: {e}"
            )
            return self

    def __str__(self):
        """Format a RayTaskError as Ray does: a coloured header, then the traceback."""
        out = []
        for line in self.traceback_str.strip().split("\n"):
            if line.startswith("Traceback "):
                header = f"{_CYAN}{self.proctitle}(){_RESET_FOREGROUND} (pid={self.pid}, ip={self.ip}"
                if self.actor_repr:
                    header += f", actor_id={self._actor_id}, repr={self.actor_repr})"
                else:
                    header += ")"
                out.append(header)
            else:
                out.append(line)
        return "\n".join(out)


class LocalRayletDiedError(RayError):
    def __str__(self):
        return "The task's local raylet died. Check raylet.out for more information."


class WorkerCrashedError(RayError):
    """Indicates that the worker died unexpectedly while executing a task."""

    def __str__(self):
        return (
            "The worker died unexpectedly while executing this task. "
            "Check python-core-worker-*.log files for more information."
        )


class RayActorError(RayError):
    """Indicates that the actor has outages unexpectedly before finishing a task."""

    BASE_ERROR_MSG = "The actor experienced an error before finishing this task."

    def __init__(
        self,
        actor_id: Optional[str] = None,
        error_msg: str = BASE_ERROR_MSG,
        actor_init_failed: bool = False,
        preempted: bool = False,
    ):
        self.actor_id = actor_id
        self.error_msg = error_msg
        self._actor_init_failed = actor_init_failed
        self._preempted = preempted

    def __reduce__(self):
        return (type(self), (self.actor_id, self.error_msg, self._actor_init_failed, self._preempted))

    def __str__(self) -> str:
        return self.error_msg

    @property
    def preempted(self) -> bool:
        return self._preempted

    @property
    def actor_init_failed(self) -> bool:
        return self._actor_init_failed


class ActorDiedError(RayActorError):
    """Indicates that the actor died unexpectedly before finishing a task."""


class ActorUnavailableError(RayActorError):
    """Raised when the actor is temporarily unavailable but may be available later."""


class RaySystemError(RayError):
    def __init__(self, client_exc, traceback_str=None):
        self.client_exc = client_exc
        self.traceback_str = traceback_str

    def __reduce__(self):
        return (type(self), (self.client_exc, self.traceback_str))

    def __str__(self):
        error_msg = f"System error: {self.client_exc}"
        if self.traceback_str:
            error_msg += f"\ntraceback: {self.traceback_str}"
        return error_msg


class AuthenticationError(RayError):
    pass


class UserCodeException(RayError):
    pass


class ObjectStoreFullError(RayError):
    pass


class OutOfDiskError(RayError):
    pass


class OutOfMemoryError(RayError):
    """Indicates that the node is running out of memory and is close to full."""


class NodeDiedError(RayError):
    pass


class ObjectLostError(RayError):
    """Indicates that the object is lost from distributed memory."""

    def __init__(self, object_ref_hex: str, owner_address=None, call_site: str = ""):
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site

    def __reduce__(self):
        return (type(self), (self.object_ref_hex, self.owner_address, self.call_site))

    def _base_str(self):
        msg = f"Failed to retrieve object {self.object_ref_hex}. "
        if self.call_site:
            msg += f"The ObjectRef was created at: {self.call_site}"
        else:
            msg += (
                "To see information about where this ObjectRef was created "
                "in Python, set the environment variable "
                "RAY_record_ref_creation_sites=1 during `ray start` and "
                "`ray.init()`."
            )
        return msg

    def __str__(self):
        return (
            self._base_str()
            + "\n\n"
            + f"All copies of {self.object_ref_hex} have been lost due to node "
            "failure. Check cluster logs (`/tmp/ray/session_latest/logs`) for "
            "more information about the failure."
        )


class ObjectFetchTimedOutError(ObjectLostError):
    pass


class RpcError(RayError):
    def __init__(self, message, rpc_code=None):
        self.message = message
        self.rpc_code = rpc_code

    def __str__(self):
        return self.message


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    pass


class ObjectFreedError(ObjectLostError):
    pass


class OwnerDiedError(ObjectLostError):
    """The process that created the object (Ray's owner: the driver, task or actor that
    called ``ray.put`` or ``.remote()``) has died while a reference to it remains.
    ``owner_address`` is, on raycompat, the Dask address of that process, if known."""

    def __str__(self):
        return (
            self._base_str()
            + "\n\n"
            + "The object's owner has exited. This is the Python "
            "worker that first created the ObjectRef via `.remote()` or "
            "`ray.put()`. Check cluster logs (`/tmp/ray/session_latest/logs`) for more "
            "information about the Python worker failure."
            + (f"\n\nOwner address: {self.owner_address}." if isinstance(self.owner_address, str) else "")
        )


class ObjectReconstructionFailedError(ObjectLostError):
    pass


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    pass


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    pass


class GetTimeoutError(RayError, TimeoutError):
    """Indicates that a call to the worker timed out."""


class PlasmaObjectNotAvailable(RayError):
    pass


class AsyncioActorExit(RayError):
    pass


class RuntimeEnvSetupError(RayError):
    def __init__(self, error_message: Optional[str] = None):
        self.error_message = error_message

    def __str__(self):
        msgs = ["Failed to set up runtime environment."]
        if self.error_message:
            msgs.append(self.error_message)
        return "\n".join(msgs)


class TaskPlacementGroupRemoved(RayError):
    def __str__(self):
        return "The placement group corresponding to this task has been removed."


class ActorPlacementGroupRemoved(RayError):
    def __str__(self):
        return "The placement group corresponding to this Actor has been removed."


class PendingCallsLimitExceeded(RayError):
    pass


class TaskUnschedulableError(RayError):
    def __init__(self, error_message: str):
        self.error_message = error_message

    def __str__(self):
        return f"The task is not schedulable: {self.error_message}"


class ActorUnschedulableError(RayError):
    def __init__(self, error_message: str):
        self.error_message = error_message

    def __str__(self):
        return f"The actor is not schedulable: {self.error_message}"


class ObjectRefStreamEndOfStreamError(RayError):
    pass


class OufOfBandObjectRefSerializationException(RayError):
    pass


class RayChannelError(RaySystemError):
    pass


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    pass


class RayCgraphCapacityExceeded(RaySystemError):
    pass


class UnserializableException(RayError):
    """Raised when a serialized exception cannot be deserialized."""

    def __init__(self, original_stack_trace: str):
        self._original_stack_trace = original_stack_trace

    def __reduce__(self):
        return (type(self), (self._original_stack_trace,))

    def __str__(self):
        return (
            "Failed to deserialize exception. Refer to https://docs.ray.io/en/latest/"
            "ray-core/objects/serialization.html#custom-serializers-for-exceptions for more "
            "information.\nOriginal exception:\n"
            f"{self._original_stack_trace}"
        )


class ActorAlreadyExistsError(ValueError, RayError):
    def __init__(self, error_message: str):
        super().__init__(error_message)
        self.error_message = error_message

    def __str__(self):
        return self.error_message


class ActorHandleNotFoundError(ValueError, RayError):
    def __init__(self, error_message: str):
        super().__init__(error_message)
        self.error_message = error_message

    def __str__(self):
        return self.error_message


def _node_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


RAY_EXCEPTION_TYPES = [
    PlasmaObjectNotAvailable,
    RayError,
    RayTaskError,
    WorkerCrashedError,
    RayActorError,
    ObjectStoreFullError,
    ObjectLostError,
    ObjectFetchTimedOutError,
    ReferenceCountingAssertionError,
    ObjectReconstructionFailedError,
    OwnerDiedError,
    GetTimeoutError,
    AsyncioActorExit,
    RuntimeEnvSetupError,
    TaskPlacementGroupRemoved,
    ActorPlacementGroupRemoved,
    PendingCallsLimitExceeded,
    LocalRayletDiedError,
    TaskUnschedulableError,
    ActorDiedError,
    ActorUnschedulableError,
    ActorUnavailableError,
    RayChannelError,
    RayChannelTimeoutError,
    OufOfBandObjectRefSerializationException,
    RayCgraphCapacityExceeded,
    UnserializableException,
    ActorAlreadyExistsError,
    ActorHandleNotFoundError,
    AuthenticationError,
]
