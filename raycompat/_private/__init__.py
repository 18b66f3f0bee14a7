"""Engine-independent internals: option validation and small shared helpers."""
