"""The dataset an ablation trains on: its folder, its layout, its split pair and where its runs live.

Three datasets have defaults; any folder in either layout (:mod:`gaussconv_plugin.data.layout`) works with
``--data-root``:

- ``sirst``: SIRST v1 (:func:`~gaussconv_plugin.data.sirst_root`, SIRST layout); final split ``trainval:test``,
  screen ``train:val``; YOLO at 320; U-Net config ``unet_mshnet_base_cpu.py`` (128-px crops).
- ``nudt_sirst``: NUDT-SIRST (:func:`~gaussconv_plugin.data.nudt_root`, IRSTD layout); final ``train:test``, screen
  ``train_sub:val_sub``; YOLO at its native 256; U-Net config ``unet_mshnet_base_nudt_cpu.py`` (256-px crops).
- ``irstd1k``: IRSTD-1k (:func:`~gaussconv_plugin.data.irstd1k_root`, IRSTD layout, lists in ``idx/``); final
  ``trainval:test`` (800 / 201, the dataset authors' split), screen ``trainval_sub:val_sub`` (the committed carve of
  ``trainval``: 720 / 80); YOLO at its native 512; U-Net config ``unet_mshnet_base_irstd1k_cpu.py`` (256-px crops of
  the 512-px images, evaluated on the full images).

A split pair is ``TRAIN:EVAL``, two list names of the folder (``idx_427/<name>.txt`` in SIRST v1; NUDT-SIRST's
``50_50/`` lists plus the committed ``train_sub``/``val_sub`` carve; IRSTD-1k's ``idx/`` lists plus
``trainval_sub``/``val_sub``). Runs of the default SIRST folder live in
``<out>/<part>/<train>-<eval>/`` (the layout of every run made before other datasets existed, so they resume);
runs of the shared NUDT-SIRST and IRSTD-1k in ``<out>/<part>/<folder name>/<train>-<eval>/``, of any other folder
in ``<out>/<part>/<folder name>-<path hash>/<train>-<eval>/`` (two folders of one name never share runs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATASETS", "Dataset", "resolve", "parse_split", "check_split", "is_default_sirst", "run_tag", "ood_targets"]


@dataclass(frozen=True)
class Dataset:
    """Defaults of a named dataset: ``final``/``screen`` split pairs, YOLO ``imgsz``, the U-Net ``unet_config``
    (a file of ``mmdet_cfgs/``) and a ``label`` for the tables."""

    final: str
    screen: str
    imgsz: int
    unet_config: str
    label: str


DATASETS = {
    "sirst": Dataset("trainval:test", "train:val", 320, "unet_mshnet_base_cpu.py", "SIRST v1 (idx_427)"),
    "nudt_sirst": Dataset("train:test", "train_sub:val_sub", 256, "unet_mshnet_base_nudt_cpu.py",
                          "NUDT-SIRST (50_50)"),
    "irstd1k": Dataset("trainval:test", "trainval_sub:val_sub", 512, "unet_mshnet_base_irstd1k_cpu.py",
                       "IRSTD-1k (idx)"),
}


def resolve(dataset: str = "sirst", data_root=None) -> Path:
    """The dataset folder: ``data_root`` if given, else the named dataset's default folder (its env variable, then
    ``../shared/data/<name>``). Raises ``SystemExit`` with one line naming the fix."""
    from gaussconv_plugin.data import dataset_root

    if dataset not in DATASETS:
        raise SystemExit(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)} (or pass --data-root DIR)")
    try:
        root = dataset_root(data_root, dataset)  # the DATASETS keys are gaussconv_plugin.data's shared datasets
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    return Path(root).resolve()


def parse_split(split: str) -> tuple[str, str]:
    """``'TRAIN:EVAL'`` → ``(TRAIN, EVAL)``."""
    parts = str(split).split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise SystemExit(f"split {split!r}: give two list names as TRAIN:EVAL, e.g. trainval:test or train_sub:val_sub")
    return parts[0].strip(), parts[1].strip()


def check_split(root, split: str) -> tuple[str, str]:
    """Parse ``split`` and check both lists exist (and are non-empty) in ``root``; one-line ``SystemExit`` else."""
    from gaussconv_plugin.data import read_split

    pair = parse_split(split)
    for name in pair:
        try:
            read_split(root, name)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"--split {split}: {e}") from None
    return pair


def is_default_sirst(root) -> bool:
    """Whether ``root`` is the default SIRST v1 folder (:func:`~gaussconv_plugin.data.sirst_root` without a path),
    whose runs and caches keep the names they had before other datasets existed."""
    from gaussconv_plugin.data import sirst_root

    try:
        return Path(root).resolve() == sirst_root(None).resolve()
    except FileNotFoundError:
        return False


def run_tag(root, split: tuple[str, str]) -> str:
    """Sub-path of a run below ``<out>/<part>/``: ``<train>-<eval>`` for the default SIRST folder, else
    ``<label>/<train>-<eval>`` with ``label`` the folder's :func:`~gaussconv_plugin.data.sirst.cache_label` (the
    shared NUDT-SIRST / IRSTD-1k by name, any other folder by name and path hash: two folders of one name never
    share runs) (module docstring)."""
    from gaussconv_plugin.data.sirst import cache_label

    pair = "-".join(split)
    return pair if root is None or is_default_sirst(root) else f"{cache_label(root)}/{pair}"


def ood_targets(dataset: str, split: str) -> list[tuple[str, str]]:
    """The out-of-distribution evaluations of an ablation on ``dataset`` with split pair ``split`` (``--ood``):
    ``[(other dataset, its split)]`` for every other named dataset — its ``test`` list after the final protocol, its
    screen's evaluation list (a validation carve of its training lists, never ``test``) after anything else, so a
    choice made on a screen never sees a test split."""
    if dataset not in DATASETS:
        raise SystemExit(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    final = parse_split(split) == parse_split(DATASETS[dataset].final)
    return [(name, parse_split(d.final)[1] if final else parse_split(d.screen)[1])
            for name, d in DATASETS.items() if name != dataset]
