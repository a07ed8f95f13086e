"""Version of jupyter-audit (read by hatchling from this file)."""

__version__ = "0.1.0"
