#!/usr/bin/env bash
# Set up (or check) the project's virtual environment in .venv — `make setup`.
#
# Idempotent: a run whose inputs (requirements/constraints.txt, pyproject.toml,
# setup.py, the root *.pth, this script, the Python version) are unchanged since the last successful run
# only checks installed versions against the stamp and returns in a second or so.
# Any failure stops with ONE line on stderr that names the fix.
#
# What it installs (every pip call gets `-c requirements/constraints.txt`):
#   torch + torchvision (wheels on this machine's disk), then mmcv 2.1.0 built from
#   its PyPI sdist with ops (patched to -std=c++20 for torch 2.14 headers) and
#   cached as a wheel outside the repo, then the project `-e .[all]` and the rest,
#   then pyirstdmetrics with --no-deps (see the constraints file for why).
#
# Environment knobs:
#   GAUSSCONV_CACHE  wheel cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/gaussconv_plugin)
#   PYTHON           interpreter used to create .venv (default python3; must be 3.11)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
CONSTRAINTS="$REPO/requirements/constraints.txt"
PYPROJECT="$REPO/pyproject.toml"
STAMP="$VENV/.gaussconv_setup_stamp"
PIPLOG="$VENV/setup-pip.log"
CACHE="${GAUSSCONV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gaussconv_plugin}"
WHEELS="$CACHE/wheels"
# Ultralytics settings/fonts dir, per checkout (settings.json stores absolute run/weight dirs).
YOLO_DIR="$VENV/ultralytics"

die() { echo "setup_env: $*" >&2; exit 1; }
log() { echo "[setup_env] $*"; }

[ -f "$CONSTRAINTS" ] || die "$CONSTRAINTS missing: restore requirements/constraints.txt from git"

# Pinned version of a package from the constraints file (`name==version` lines).
pin() { sed -n "s/^$1==\([^ #]*\).*/\1/p" "$CONSTRAINTS" | head -n1; }

SELF="$REPO/tools/setup_env.sh"
stamp_value() {  # hash of file contents (not paths) + interpreter
    {
        sha256sum <"$CONSTRAINTS"
        sha256sum <"$SELF"
        # packaging inputs of the editable install (setup.py copies the root *.pth at install time)
        for f in "$PYPROJECT" "$REPO/setup.py" "$REPO/setup.cfg" "$REPO"/*.pth; do
            if [ -f "$f" ]; then echo "${f##*/}"; sha256sum <"$f"; fi
        done
        "$PY" -c 'import sys, platform; print(sys.version, platform.machine())'
    } | sha256sum | cut -d' ' -f1
}

# Cheap check that the key pins are really installed (no heavy imports).
verify_installed() {
    "$PY" - "$CONSTRAINTS" "$([ -f "$PYPROJECT" ] && echo 1 || echo 0)" <<'EOF'
import importlib.metadata as md, importlib.util, pathlib, re, sys
pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", pathlib.Path(sys.argv[1]).read_text(), re.M))
need = ["torch", "torchvision", "ultralytics", "mmengine", "mmcv", "mmdet", "onnx",
        "onnxruntime", "numpy", "pyirstdmetrics", "setuptools", "ninja", "pytest"]
if sys.argv[2] == "1":
    pins["gaussconv-plugin"] = None
    need.append("gaussconv-plugin")
for name in need:
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(f"{name} is not installed")
    want = pins.get(name)
    if want and have.split("+")[0] != want:
        sys.exit(f"{name} {have} installed, {want} pinned")
spec = importlib.util.find_spec("mmcv")
if not spec or not any(pathlib.Path(spec.origin).parent.glob("_ext*.so")):
    sys.exit("mmcv has no compiled ops (mmcv/_ext*.so)")
EOF
}

# ---------------------------------------------------------------- fast path
exit_if_up_to_date() {
    if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value 2>/dev/null)" ]; then
        if why="$(verify_installed 2>&1)"; then
            log "environment up to date (.venv matches requirements/constraints.txt, pyproject.toml)"
            exit 0
        fi
        log "stamp matches but ${why##*$'\n'}; reinstalling"
    fi
}
exit_if_up_to_date

# ---------------------------------------------------------------- preconditions
# One set-up at a time per checkout; a run that waited re-checks the stamp.
mkdir -p "$VENV" 2>/dev/null || die "cannot create $VENV: check permissions on $REPO"
exec 9>"$VENV/.setup.lock"
if ! flock -n 9; then
    log "waiting for another setup_env.sh run on this checkout"
    flock -w 3600 9 || die "another setup_env.sh holds $VENV/.setup.lock: wait for it to finish"
    exit_if_up_to_date
fi

# A pip started by hand into this .venv (e.g. a background torch install): wait for it.
foreign_pip() {
    local pid cmd
    for pid in $(pgrep -f 'pip install' || true); do
        cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || continue
        case "$cmd" in
            *"$VENV/"*) echo "$pid"; return 0 ;;
            *".venv/bin/"*) [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$REPO" ] && { echo "$pid"; return 0; } ;;
        esac
    done
    return 1
}
waited=0
while pid="$(foreign_pip)"; do
    [ "$waited" -eq 0 ] && log "waiting for pip process $pid, already installing into .venv"
    [ "$waited" -ge 3600 ] && die "pip process $pid has been installing into .venv for over an hour: end it (kill $pid) and rerun"
    sleep 5; waited=$((waited + 5))
done

PYBASE="${PYTHON:-python3}"
if [ ! -x "$PY" ]; then
    command -v "$PYBASE" >/dev/null || die "$PYBASE not found: install Python 3.11 (apt-get install python3.11 python3.11-venv) or set PYTHON="
fi
PYVER_CHECK="${PY}"; [ -x "$PY" ] || PYVER_CHECK="$PYBASE"
pyver="$("$PYVER_CHECK" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || die "$PYVER_CHECK does not run: rm -rf .venv and rerun make setup"
[ "$pyver" = "3.11" ] || die "Python $pyver at $PYVER_CHECK, need 3.11 (torch 2.14.1 wheels on disk are cp311): set PYTHON=/path/to/python3.11 and rm -rf .venv"

free_kb() { df -Pk "$1" | awk 'NR==2 {print $4}'; }
if [ -x "$PY" ] && "$PY" -c 'import importlib.metadata as m; m.version("torch")' >/dev/null 2>&1; then
    need_gb=3   # torch already there: the rest + an mmcv build
else
    need_gb=10  # torch CUDA build alone is ~5.5 GB in the venv
fi
[ "$(free_kb "$REPO")" -ge $((need_gb * 1024 * 1024)) ] \
    || die "less than $need_gb GB free on the filesystem of $REPO: free disk space"

# ---------------------------------------------------------------- venv
if [ ! -x "$PY" ]; then
    log "creating .venv with $PYBASE"
    "$PYBASE" -m venv "$VENV" || die "python -m venv failed: apt-get install python3-venv (or python3.11-venv)"
fi
export PATH="$VENV/bin:$PATH"   # ninja from the venv must be on PATH for torch's extension builder
export PIP_DISABLE_PIP_VERSION_CHECK=1

: >"$PIPLOG"
pip_install() {  # pip_install <what> <pip args...>
    local what="$1"; shift
    echo "=== pip install $*" >>"$PIPLOG"
    if ! "$PY" -m pip install --progress-bar off -c "$CONSTRAINTS" "$@" >>"$PIPLOG" 2>&1; then
        local err
        err="$(grep -E '^ERROR|error:' "$PIPLOG" | grep -v 'is ignored' | tail -n1)"
        die "pip install of $what failed (${err:-see log}): see .venv/setup-pip.log; check the pins in requirements/constraints.txt"
    fi
}

log "installing torch, torchvision and build tools (pip log: .venv/setup-pip.log)"
pip_install "torch/torchvision/build tools" torch torchvision setuptools wheel ninja

# ---------------------------------------------------------------- mmcv wheel
MMCV_VER="$(pin mmcv)"
TORCH_VER="$("$PY" -c 'import torch; print(torch.__version__)')"
PYTAG="$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
ARCH="$(uname -m)"
# Ops are always built for the CPU (no CUDA kernels): same wheel with or without a GPU.
KEY="mmcv-${MMCV_VER}_torch-${TORCH_VER}_${PYTAG}_${ARCH}_cpuops"
WHEEL_DIR="$WHEELS/$KEY"
MMCV_WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VER"-*.whl 2>/dev/null | head -n1 || true)"

if [ -z "$MMCV_WHEEL" ]; then
    command -v g++ >/dev/null || die "g++ not found: apt-get install g++"
    "$VENV/bin/ninja" --version >/dev/null 2>&1 || die "ninja missing from .venv: rm -rf .venv and rerun make setup"
    mkdir -p "$WHEELS" 2>/dev/null || die "cannot create $WHEELS: set GAUSSCONV_CACHE to a writable directory"
    [ "$(free_kb "$WHEELS")" -ge $((2 * 1024 * 1024)) ] || die "less than 2 GB free for $WHEELS: free disk space or set GAUSSCONV_CACHE"
    BUILD="$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")"
    trap 'cp "$BUILD"/*.log "$VENV"/ 2>/dev/null; rm -rf "$BUILD"' EXIT   # logs kept in .venv
    trap 'exit 143' INT TERM   # run the EXIT trap when interrupted too
    log "building mmcv $MMCV_VER with ops for torch $TORCH_VER (one-off, 13-20 min on 2 cores; log: $BUILD/build.log, kept as .venv/build.log)"
    # The sdist's metadata step imports torch, hence --no-build-isolation from inside the venv.
    "$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation \
        -c "$CONSTRAINTS" "mmcv==$MMCV_VER" -d "$BUILD/sdist" >"$BUILD/download.log" 2>&1 \
        || die "downloading the mmcv $MMCV_VER sdist failed (see .venv/download.log): check access to PyPI"
    tar -xzf "$BUILD"/sdist/mmcv-"$MMCV_VER".tar.gz -C "$BUILD" || die "cannot unpack the mmcv sdist: free space in ${TMPDIR:-/tmp}"
    SRC="$BUILD/mmcv-$MMCV_VER"
    # torch 2.14 headers need C++20; mmcv's setup.py hard-codes -std=c++14/c++17.
    n_old="$(grep -c -- '-std=c++1[47]' "$SRC/setup.py" || true)"
    [ "$n_old" -gt 0 ] || die "mmcv setup.py has no -std=c++14/17 flag to patch: update the patch in tools/setup_env.sh"
    sed -i 's/-std=c++1[47]/-std=c++20/g' "$SRC/setup.py"
    if grep -q -- '-std=c++1[47]' "$SRC/setup.py" || [ "$(grep -c -- '-std=c++20' "$SRC/setup.py")" -ne "$n_old" ]; then
        die "patching mmcv setup.py to -std=c++20 did not match: update the sed in tools/setup_env.sh"
    fi
    # MMCV_WITH_OPS=1: compiled ops; FORCE_CUDA=0 and no visible GPU: CPU ops only.
    # MAX_JOBS + ninja: parallel compile.
    # CFLAGS: a CFLAGS variable *replaces* Python's default compile flags, so pass those
    # (-DNDEBUG -O3 ...) unchanged and append -g0, which only drops debug info: same
    # machine code, faster compile, much smaller wheel.
    cflags="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")') -g0"
    case "$cflags" in *-O[1-3s]*) ;; *) die "Python's CFLAGS ($cflags) has no -O level: drop the CFLAGS line in tools/setup_env.sh" ;; esac
    ( cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 CUDA_VISIBLE_DEVICES="" MAX_JOBS="$(nproc)" CFLAGS="$cflags" \
        "$PY" -m pip wheel --no-build-isolation --no-deps -v -w "$BUILD/wheel" . ) >"$BUILD/build.log" 2>&1 \
        || die "mmcv $MMCV_VER build failed: $(grep -m1 -E 'error' "$BUILD/build.log" | cut -c1-200) — full log .venv/build.log"
    built="$(ls "$BUILD"/wheel/mmcv-"$MMCV_VER"-*.whl 2>/dev/null | head -n1)"
    [ -n "$built" ] || die "mmcv build produced no wheel: see .venv/build.log"
    # (no `grep -q` after a pipe here: with pipefail its early exit fails the pipeline)
    unzip -Z1 "$built" | grep -E '^mmcv/_ext.*\.so$' >/dev/null || die "mmcv wheel has no compiled ops (_ext*.so): check MMCV_WITH_OPS in tools/setup_env.sh"
    mkdir -p "$WHEEL_DIR.tmp.$$" && cp "$built" "$WHEEL_DIR.tmp.$$/" && rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.tmp.$$" "$WHEEL_DIR"
    MMCV_WHEEL="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VER"-*.whl | head -n1)"
    log "cached $MMCV_WHEEL"
else
    log "using cached $MMCV_WHEEL"
fi

# ---------------------------------------------------------------- everything else
PROJECT=()
if [ -f "$PYPROJECT" ]; then
    PROJECT=(-e "$REPO[all]")
else
    log "WARNING: no pyproject.toml yet, skipping 'pip install -e .[all]'"
fi
log "installing mmcv wheel, project and pinned dependencies"
pip_install "the pinned stack" "$MMCV_WHEEL" "${PROJECT[@]}" \
    ultralytics mmengine mmdet onnx onnxruntime numpy opencv-python scipy scikit-image pytest
# pyirstdmetrics declares numpy<2; we run it on numpy 2.x (tests/test_env.py checks it),
# so no deps here: its real runtime deps (numpy, scipy, scikit-image) are installed above.
pip_install pyirstdmetrics --no-deps pyirstdmetrics

# pip check: the pyirstdmetrics numpy<2 declaration is the one known, accepted conflict.
if ! "$PY" -m pip check >"$VENV/pip-check.log" 2>&1; then
    if grep -v -E '^pyirstdmetrics [^ ]+ has requirement numpy<2' "$VENV/pip-check.log" >/dev/null; then
        log "WARNING: pip check reports: $(grep -v '^pyirstdmetrics' "$VENV/pip-check.log" | tr '\n' ';')"
    fi
fi

# ---------------------------------------------------------------- ultralytics, offline
# YOLO_CONFIG_DIR (set by the Makefile to .venv/ultralytics) gets, in its Ultralytics/
# subdir, settings.json and the fonts ultralytics would otherwise fetch from GitHub
# (check_font ignores YOLO_OFFLINE).
# Matplotlib's bundled DejaVuSans stands in for Arial.ttf / Arial.Unicode.ttf.
mkdir -p "$YOLO_DIR"
export YOLO_CONFIG_DIR="$YOLO_DIR" YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false MPLBACKEND=Agg
"$PY" - "$YOLO_DIR" "$REPO" <<'EOF' || die "configuring ultralytics offline failed: run .venv/bin/python -c 'import ultralytics' to see why"
import pathlib, shutil, sys
import matplotlib
from ultralytics.utils import SETTINGS, USER_CONFIG_DIR  # $YOLO_CONFIG_DIR/Ultralytics
cfg, repo = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
assert USER_CONFIG_DIR.parent == cfg, (USER_CONFIG_DIR, cfg)
font = pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
for name in ("Arial.ttf", "Arial.Unicode.ttf"):
    if not (USER_CONFIG_DIR / name).exists():
        shutil.copyfile(font, USER_CONFIG_DIR / name)
SETTINGS.update(sync=False, runs_dir=str(repo / "runs"), weights_dir=str(cfg / "weights"),
                datasets_dir=str(repo / "datasets"))
EOF

# ---------------------------------------------------------------- verify + stamp
why="$(verify_installed 2>&1)" || die "after install: ${why##*$'\n'}: see .venv/setup-pip.log"
"$PY" -c 'import torch, mmcv, mmcv.ops, mmdet, ultralytics, py_irstd_metrics' >"$VENV/import-check.log" 2>&1 \
    || die "import check failed ($(tail -n1 "$VENV/import-check.log")): see .venv/import-check.log"
stamp_value >"$STAMP"
log "environment ready: $VENV"
