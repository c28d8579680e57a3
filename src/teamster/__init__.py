"""teamster: an agent harness built on the worker model."""

__version__ = "0.1.0"
