# Shared by scripts/lab and scripts/test: make .venv and install the project into it, once per
# change of pyproject.toml (a stamp file remembers what was installed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WORKBENCH_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "error: Python 3.10 or newer is needed ($PY is $("$PY" --version 2>&1))" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)-${WORKBENCH_EXTRAS:-test}"
stamp="$VENV/.workbench-installed"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "installing the workbench and its dependencies into $VENV (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # e.g. scripts/bench: the CPU build of torch before an extra that depends on torch
  # shellcheck disable=SC2086
  # --no-compile, then one parallel byte-compile of the whole venv: pip compiles file by file on
  # one core (about 80 of the 170 s a fresh [bench] install took); compileall -j 0 uses every core.
  [ -z "${WORKBENCH_PIP_FIRST:-}" ] || "$VENV/bin/python" -m pip install -q --no-compile $WORKBENCH_PIP_FIRST >&2
  "$VENV/bin/python" -m pip install -q --no-compile -e "$ROOT[${WORKBENCH_EXTRAS:-test}]" >&2
  # Model Explorer for the Graph tab, without the 481 MB TF/TFLite adapter it requires (ONNX does
  # not use it; its light dependencies come with [test]); the [viewer] extra is the full install
  if [ -z "${WORKBENCH_NO_VIEWER:-}" ]; then
    "$VENV/bin/python" -m pip install -q --no-compile --no-deps \
      ai-edge-model-explorer==0.1.34 model-explorer-onnx==0.4.2 >&2
  fi
  # a few packages ship files that do not compile on this Python (templates, py2 fixtures): not an error
  "$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
