"""The errors an actor's calls end with, as Ray words them (shared by the worker-side
shell and the caller)."""

from __future__ import annotations

from raycompat import exceptions as rex


def actor_died(actor_id: str, class_name: str, reason: str) -> rex.ActorDiedError:
    msg = "\n".join(
        [
            "The actor died unexpectedly before finishing this task.",
            f"\tclass_name: {class_name}",
            f"\tactor_id: {actor_id}",
            reason,
        ]
    )
    return rex.ActorDiedError(actor_id, msg)


def init_failed(actor_id: str, err: rex.RayTaskError) -> rex.ActorDiedError:
    return rex.ActorDiedError(
        actor_id,
        f"The actor died because of an error raised in its creation task, {err}",
        actor_init_failed=True,
    )


KILLED = "The actor is dead because it was killed by ray.kill."
EXITED = "The actor is dead because its worker process has died. Worker exit type: INTENDED_USER_EXIT"


class ActorExit(Exception):
    """Raised by ``ray.actor.exit_actor()`` inside a method."""


# ============================================================================ worker side
