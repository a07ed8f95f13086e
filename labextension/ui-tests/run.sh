#!/usr/bin/env bash
# Run the jupyter-audit panel's UI tests (Galata + Playwright) in Debian's Chromium.
#
# Assumes the Python package is installed with its labextension (`pip install -e .` from
# the repository root) and Chromium at /usr/bin/chromium (or $CHROMIUM_PATH). Installs the
# test's npm dependencies without any browser download, starts a throwaway JupyterLab on
# a seeded demo trail (jupyter_server_test_config.py) and exits non-zero on any failure.
# Screenshots land in docs/panel-{traces,timeline,detail,integrity,approvals,session-ended,collector}.png.
#
# Environment: JUPYTER_AUDIT_UI_PORT (default 8888) picks the test server's port;
# extra arguments are passed to `playwright test` (e.g. -g "timeline").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"

if [ ! -x "$CHROMIUM_PATH" ]; then
  echo "run.sh: no Chromium at $CHROMIUM_PATH (apt-get install -y chromium)" >&2
  exit 2
fi
if ! python -c "import jupyter_audit.cli.demo" 2>/dev/null; then
  echo "run.sh: the jupyter_audit package is not importable; run 'pip install -e .' first" >&2
  exit 2
fi
if ! jupyter labextension list 2>&1 | grep -q "jupyter-audit .*enabled.*OK"; then
  echo "run.sh: the jupyter-audit labextension is not installed and enabled:" >&2
  jupyter labextension list >&2 || true
  exit 2
fi

jlpm install --immutable
# The spec takes the API's types from ../../src/tokens.ts: check it still agrees with them.
jlpm typecheck
jlpm playwright test "$@"
