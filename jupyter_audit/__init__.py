"""jupyter-audit: a verifiable, tamper-evident audit trail for Jupyter notebook work."""

from ._version import __version__


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-audit"}]


def _jupyter_server_extension_points():
    from .app import AuditApp

    return [{"module": "jupyter_audit", "app": AuditApp}]


__all__ = ["__version__"]
