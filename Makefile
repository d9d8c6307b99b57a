# Entry points. `make test` is the project's test command (also run by .ci/run).
SHELL := /bin/bash
PY    := .venv/bin/python

# Offline switches for every command run from here (no network but package registries):
#   YOLO_OFFLINE=1         ultralytics' is_online() returns False without DNS probes: no
#                          auto-update checks, no analytics, downloads fail fast (no retries).
#   YOLO_AUTOINSTALL=false ultralytics never pip-installs a missing requirement.
#   YOLO_CONFIG_DIR        settings.json + stand-in fonts (written by tools/setup_env.sh), so
#                          check_font(), which ignores YOLO_OFFLINE, never downloads Arial.
#   HF_HUB_OFFLINE=1       in case anything reaches for the Hugging Face hub.
#   MPLBACKEND=Agg         no display.
export YOLO_OFFLINE     := 1
export YOLO_AUTOINSTALL := false
export YOLO_CONFIG_DIR  := $(CURDIR)/.venv/ultralytics
export HF_HUB_OFFLINE   := 1
export MPLBACKEND       := Agg

.PHONY: setup test demo

setup:
	bash tools/setup_env.sh

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

demo: setup
	@test -f tools/demo.py || { echo "tools/demo.py not found: it is not written yet" >&2; exit 1; }
	$(PY) tools/demo.py
