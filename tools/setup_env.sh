#!/usr/bin/env bash
# Build (or refresh) the project's virtual environment from nothing; safe to run repeatedly.
#
#   VENV=.venv          where to build it
#   DETECTRON2_SRC=DIR  a detectron2 source tree to install instead of the PyPI v0.6 release
#
# A detectron2 already importable in the venv is left untouched (e.g. one built with its C++ ops).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.setup-stamp"
HASH=$(cat tools/setup_env.sh tools/patch_detectron2.py requirements.txt constraints.txt pyproject.toml | sha1sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check --progress-bar off)

echo "[setup] torch + torchvision"
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1" -c constraints.txt
echo "[setup] pinned dependencies"
"${PIP[@]}" -r requirements.txt -c constraints.txt

if "$VPY" -c "import detectron2" 2>/dev/null; then
  d2dir=$("$VPY" -c 'import detectron2, os; print(os.path.dirname(detectron2.__file__))')
  echo "[setup] detectron2 present: $d2dir"
  if [ -f "$d2dir/_C.py" ]; then  # our Python-only install: keep its placeholder current
    "$VPY" tools/patch_detectron2.py --stub-only "$d2dir"
  fi
elif [ -n "${DETECTRON2_SRC:-}" ]; then
  echo "[setup] detectron2 from $DETECTRON2_SRC"
  "${PIP[@]}" --no-build-isolation -e "$DETECTRON2_SRC"
else
  echo "[setup] detectron2 v0.6 source release (Python only, no C++ ops)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$VPY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
      --no-build-isolation -d "$work" "pb1-detectron2==0.6"
  tar -xzf "$work"/pb1-detectron2-0.6.tar.gz -C "$work"
  src=$(find "$work" -maxdepth 1 -type d -name 'pb1*detectron2*' | head -n1)
  "$VPY" tools/patch_detectron2.py "$src"
  "${PIP[@]}" --no-build-isolation --no-deps "$src"
fi

echo "[setup] densepose_ext (editable)"
"${PIP[@]}" --no-build-isolation --no-deps -e .
"$VPY" -c "import detectron2, densepose_ext, synthesis, distill; print('[setup] ok: detectron2', detectron2.__version__)"
echo "$HASH" > "$STAMP"
