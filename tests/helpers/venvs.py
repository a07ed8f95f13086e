"""Fresh virtual environments for the install tests (test_wheel, test_binder): the
environment variables a clean shell in one would have, keeping only how pip reaches its
index (and its cache, when asked)."""

import os
from pathlib import Path

PIP_REACH = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CACHE_DIR", "HTTPS_PROXY", "HTTP_PROXY")


def clean_env(bindir: Path, home: Path, *, reuse_pip_cache: bool = False) -> dict:
    """PATH = the venv's bin then the system's, HOME = `home`; `reuse_pip_cache`: the
    runner's own pip cache (a fresh venv, not a fresh download of every wheel)."""
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(home),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.update({key: os.environ[key] for key in PIP_REACH if key in os.environ})
    if reuse_pip_cache:
        env.setdefault("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip"))
    return env
