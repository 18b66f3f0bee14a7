"""Ray's ``ray._private.object_ref_generator`` path for the generator classes."""

from raycompat._dask.streaming import DynamicObjectRefGenerator, ObjectRefGenerator

__all__ = ["DynamicObjectRefGenerator", "ObjectRefGenerator"]
