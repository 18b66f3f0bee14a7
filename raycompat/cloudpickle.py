"""``ray.cloudpickle``: Ray vendors cloudpickle under this name; raycompat uses the
cloudpickle package itself, and this module is it."""

import sys

import cloudpickle as _cloudpickle

sys.modules[__name__] = _cloudpickle
