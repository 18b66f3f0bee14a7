"""The names a Ray program imports, at each of Ray's module paths raycompat provides.

Each list is what Ray 2.60 exports there (its ``__all__``, or its public names where it
has none) and raycompat provides too: on Ray (``RAYCOMPAT_TEST_ENGINE=ray``) the test
checks the lists are Ray's; on raycompat, that none of them went missing.
"""

from __future__ import annotations

import importlib

import pytest

from conftest import engine_module

SURFACE = {
    "": [
        "DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator", "__version__", "actor",
        "available_resources", "cancel", "cluster_resources", "get", "get_actor", "get_gpu_ids",
        "get_runtime_context", "init", "is_initialized", "kill", "method", "nodes", "put",
        "remote", "shutdown", "timeline", "util", "wait"
    ],
    ".exceptions": [
        "ActorAlreadyExistsError", "ActorDiedError", "ActorHandleNotFoundError",
        "ActorPlacementGroupRemoved", "ActorUnavailableError", "ActorUnschedulableError",
        "AsyncioActorExit", "AuthenticationError", "CrossLanguageError", "GetTimeoutError",
        "LocalRayletDiedError", "NodeDiedError", "ObjectFetchTimedOutError", "ObjectFreedError",
        "ObjectLostError", "ObjectReconstructionFailedError", "ObjectRefStreamEndOfStreamError",
        "ObjectStoreFullError", "OufOfBandObjectRefSerializationException",
        "OutOfDiskError", "OutOfMemoryError", "OwnerDiedError", "PendingCallsLimitExceeded",
        "PlasmaObjectNotAvailable", "RAY_EXCEPTION_TYPES", "RayActorError",
        "RayCgraphCapacityExceeded", "RayChannelError", "RayChannelTimeoutError", "RayError",
        "RaySystemError", "RayTaskError", "ReferenceCountingAssertionError", "RpcError",
        "RuntimeEnvSetupError", "TaskCancelledError", "TaskPlacementGroupRemoved",
        "TaskUnschedulableError", "UnserializableException", "UserCodeException",
        "WorkerCrashedError"
    ],
    ".util": [
        "ActorPool", "as_completed", "get_current_placement_group", "get_node_ip_address",
        "get_placement_group", "inspect_serializability", "list_named_actors", "map_unordered",
        "placement_group", "placement_group_table", "remove_placement_group"
    ],
    ".util.placement_group": [
        "PlacementGroup", "check_placement_group_index", "get_current_placement_group",
        "get_placement_group", "placement_group", "placement_group_table",
        "remove_placement_group", "validate_placement_group"
    ],
    ".util.state": [
        "get_actor", "get_node", "get_task", "list_actors", "list_nodes", "list_tasks",
        "summarize_actors", "summarize_tasks"
    ],
    ".experimental.tqdm_ray": [
        "RAY_TQDM_MAGIC", "instance", "safe_print", "tqdm"
    ],
    ".runtime_env": [
        "RuntimeEnv", "RuntimeEnvConfig"
    ],
    ".cloudpickle": [
        "dumps", "loads"
    ],
    ".util.queue": [
        "Empty", "Full", "Queue"
    ],
    ".util.multiprocessing": [
        "JoinableQueue", "Pool", "TimeoutError"
    ],
    ".util.scheduling_strategies": [
        "NodeAffinitySchedulingStrategy", "NodeLabelSchedulingStrategy",
        "PlacementGroupSchedulingStrategy", "SchedulingStrategyT"
    ],
    ".util.actor_pool": [
        "ActorPool"
    ],
    ".actor": [
        "ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"
    ],
    ".dag": [
        "BIND_INDEX_KEY", "ClassMethodNode", "ClassNode", "DAGInputData", "DAGNODE_TYPE_KEY",
        "DAGNode", "FunctionNode", "IS_CLASS_METHOD_OUTPUT_KEY", "InputAttributeNode",
        "InputNode", "MultiOutputNode", "PARENT_CLASS_NODE_KEY", "PREV_CLASS_METHOD_CALL_KEY"
    ],
    ".runtime_context": [
        "RuntimeContext", "get_runtime_context"
    ],
    ".util.joblib": [
        "register_ray"
    ],
    ".util.annotations": [
        "RayDeprecationWarning"
    ],
}


@pytest.mark.parametrize("path", sorted(SURFACE))
def test_names_exported_at_rays_paths(path):
    top = engine_module().__name__
    module = importlib.import_module(top + path)
    missing = [name for name in SURFACE[path] if not hasattr(module, name)]
    assert not missing, f"{top + path} lacks {missing}"
