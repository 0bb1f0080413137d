"""The version of coaptcp, in one place (read by setup.cfg without importing the package)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
