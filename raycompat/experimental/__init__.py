"""``ray.experimental``: the parts raycompat provides (``tqdm_ray``).

Ray's ``import ray`` loads ``ray.experimental.tqdm_ray`` (its log monitor uses it), so
``ray.experimental.tqdm_ray.tqdm`` works without importing it first: so here.
"""

from raycompat.experimental import tqdm_ray

__all__ = ["tqdm_ray"]
