"""``runtime_env`` validation: which keys raycompat honours, and Ray's error for the rest."""

from __future__ import annotations

SUPPORTED = ("env_vars", "config")


def validate_runtime_env(runtime_env) -> None:
    """Raise for a ``runtime_env`` raycompat cannot honour (Ray's ``RuntimeEnvSetupError``)."""
    if runtime_env is None:
        return
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(runtime_env)}")
    unsupported = sorted(set(runtime_env) - set(SUPPORTED))
    if unsupported:
        from raycompat.exceptions import RuntimeEnvSetupError

        raise RuntimeEnvSetupError(
            f"raycompat supports only the runtime_env keys {list(SUPPORTED)} so far; got "
            f"unsupported key(s) {unsupported}. Ship code to Dask workers with "
            "distributed's UploadDirectory/PipInstall plugins meanwhile."
        )
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise TypeError("runtime_env['env_vars'] must be a dict of str to str.")
