"""jupyter-audit: a verifiable, tamper-evident audit trail for Jupyter notebook work."""

from ._version import __version__


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-audit"}]


def _jupyter_server_extension_points():
    from .server.app import AuditApp

    return [{"module": "jupyter_audit", "app": AuditApp}]


__all__ = ["__version__"]


def load_ipython_extension(ip):
    """`%load_ext jupyter_audit` in a kernel: the kernel side (capture only)."""
    from .kernel import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip):
    from .kernel import unload_ipython_extension as unload

    unload(ip)
