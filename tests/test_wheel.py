"""The template's isolated-wheel check: build the wheel, install it into a clean virtual
environment that has no Node.js on PATH, and check both extension lists show it enabled."""

import shutil
import subprocess
import sys
import venv

import pytest
from helpers.servers import REPO
from helpers.venvs import clean_env


@pytest.mark.timeout(1500)
def test_wheel_installs_enabled_in_a_clean_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        timeout=1200,
    )
    wheels = list(dist.glob("jupyter_audit-*.whl"))
    assert len(wheels) == 1
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bindir = env_dir / "bin"
    # no node in the clean environment: the wheel must carry the built panel
    env = clean_env(bindir, tmp_path / "home")
    if shutil.which("node", path=env["PATH"]):
        env["PATH"] = str(bindir)
    subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "-q", str(wheels[0])],
        check=True,
        env=env,
        timeout=1200,
    )
    server = subprocess.run(
        [str(bindir / "jupyter"), "server", "extension", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    text = server.stdout + server.stderr
    assert "jupyter_audit" in text and "enabled" in text.split("jupyter_audit", 1)[1][:40]
    assert "jupyter_audit 0" in text and "OK" in text
    lab = subprocess.run(
        [str(bindir / "jupyter"), "labextension", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    text = lab.stdout + lab.stderr
    line = next(x for x in text.splitlines() if "jupyter-audit" in x)
    assert "enabled" in line and "OK" in line
    cli = subprocess.run(
        [str(bindir / "jupyter"), "audit", "--help"], capture_output=True, text=True, env=env
    )
    assert cli.returncode == 0 and "verify" in cli.stdout
