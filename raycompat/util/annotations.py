"""Ray's ``ray.util.annotations``: the warning class Ray's deprecations use.

Ray 2.60 defines ``RayDeprecationWarning`` here and, unless Python was started with
``-W`` options, shows it once per module that triggers it. raycompat mirrors both, so
``from ray.util.annotations import RayDeprecationWarning`` keeps working (for example to
filter ``DAGNode.execute()``'s warning).
"""

from __future__ import annotations

import sys
import warnings


class RayDeprecationWarning(DeprecationWarning):
    """Specialized Deprecation Warning for fine grained filtering control"""


if not sys.warnoptions:
    warnings.filterwarnings("module", category=RayDeprecationWarning)

__all__ = ["RayDeprecationWarning"]
