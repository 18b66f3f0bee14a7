"""raycompat's version (its own module, so the engine can read it without importing the package)."""

__version__ = "0.1.0"
