#!/usr/bin/env bash
# One-shot, idempotent setup on a fresh machine: Debian tools, a project virtualenv, pinned packages.
set -euo pipefail
cd "$(dirname "$0")"

# scamper gives sc_warts2json and a real scamper; graphviz renders interpretability trees.
need=()
command -v sc_warts2json >/dev/null 2>&1 || need+=(scamper)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
# Debian's Chromium and its driver: the report pages are tested in a real headless browser (selenium).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get install -y "${need[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y "${need[@]}" >/dev/null; }
  else
    echo "warning: install Debian packages ${need[*]} by hand (apt-get not found)" >&2
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.flamenco-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch==2.13.0 is pinned in pyproject: pip takes the CPU wheel; the constraints pin everything we tested.
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[test]'
  touch "$stamp"
fi
