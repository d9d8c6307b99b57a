"""Split lists committed with the package, for datasets whose own folder lacks them (a validation carve).

NUDT-SIRST ships only ``50_50/{train,test}.txt`` (663 / 664 names). Choosing a checkpoint on the test set
biases the test result, so a fixed 10 % of the 663 ``train`` names is held out for validation:
``val_sub`` (66 names) and ``train_sub`` (the other 597), committed as::

    gaussconv_plugin/data/splits/nudt_sirst/50_50/train_sub.txt
    gaussconv_plugin/data/splits/nudt_sirst/50_50/val_sub.txt
    gaussconv_plugin/data/splits/nudt_sirst/50_50/derived.json     recipe + fingerprint of the parent list

**How** :func:`~gaussconv_plugin.data.sirst.read_split` **finds them.** ``read_split(root, split, idx)`` reads
``root/idx/<split>.txt`` when it exists (a dataset's own list always wins). Otherwise it asks
:func:`committed_split_file`: a committed folder ``splits/<dataset>/<idx>/`` whose ``derived.json`` lists ``split``
and whose parent fingerprint (sha256 of the sorted names of ``root/idx/<parent>.txt``) equals the one recorded.
The match is by content, not by folder name, so it works wherever the dataset lies and whatever its folder is
called, and never applies to another dataset. Nothing is written into the dataset folder.

**The carve** (:func:`carve_val`): the ``round(fraction · n)`` names with the smallest
``sha256(f"{seed}:{name}")`` form the validation list; both lists keep the parent's order. It depends on no
random generator, so it is the same with any Python or NumPy version. Regenerate (identical files)::

    python tools/make_val_split.py --data-root ../shared/data/nudt_sirst --idx 50_50 \\
        --parent train --fraction 0.1 --seed 0 --dataset nudt_sirst

(``--out DIR`` writes elsewhere, e.g. to compare; the default is the package's ``splits/`` folder.)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

__all__ = [
    "COMMITTED_DIR", "read_names", "names_fingerprint", "carve_val", "committed_idxs", "committed_split_file",
    "write_derived_splits",
]

#: the package folder holding committed split lists: ``<dataset>/<idx>/{<split>.txt, derived.json}``
COMMITTED_DIR = Path(__file__).resolve().parent / "splits"
_fp_cache: dict[tuple, str] = {}


def read_names(path: str | os.PathLike) -> list[str]:
    """Names of a split list: one per line, surrounding blanks and blank lines dropped."""
    return [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]


def names_fingerprint(names) -> str:
    """sha256 (hex) of the sorted unique names joined by newlines: identifies a split list by its content."""
    return hashlib.sha256("\n".join(sorted(set(names))).encode()).hexdigest()


def _file_fingerprint(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _fp_cache:
        _fp_cache[key] = names_fingerprint(read_names(path))
    return _fp_cache[key]


def carve_val(names, fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split ``names`` into ``(train_sub, val_sub)``: ``val_sub`` = the ``round(fraction · n)`` names (at least 1)
    with the smallest ``sha256(f"{seed}:{name}")``; both keep the order of ``names``. Deterministic."""
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError("the parent list repeats names; de-duplicate it before carving a validation list")
    if not 0 < fraction < 1 or len(names) < 2:
        raise ValueError(f"need 0 < fraction < 1 and at least 2 names (got fraction={fraction}, {len(names)} names)")
    k = max(1, min(len(names) - 1, round(fraction * len(names))))
    rank = sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
    val = set(rank[:k])
    return [n for n in names if n not in val], [n for n in names if n in val]


def _recipes(idx: str | None = None):
    """``(folder, recipe)`` of every committed ``derived.json`` (of split folder ``idx`` if given)."""
    if not COMMITTED_DIR.is_dir():
        return
    for f in sorted(COMMITTED_DIR.glob(f"*/{idx or '*'}/derived.json")):
        yield f.parent, json.loads(f.read_text())


def _matches(root: Path, recipe: dict) -> bool:
    parent = root / recipe["idx"] / f"{recipe['parent']}.txt"
    return parent.is_file() and _file_fingerprint(parent) == recipe["parent_sha256"]


def committed_split_file(root: str | os.PathLike, idx: str, split: str) -> Path | None:
    """The committed ``<split>.txt`` derived from ``root/idx``'s own lists (see the module docstring), or None."""
    for folder, recipe in _recipes(idx):
        if split in recipe["splits"] and _matches(Path(root), recipe):
            return folder / f"{split}.txt"
    return None


def committed_idxs(root: str | os.PathLike, split: str) -> list[str]:
    """Split folders ``idx`` of ``root`` for which a committed ``<split>.txt`` exists."""
    return sorted({r["idx"] for _, r in _recipes() if split in r["splits"] and _matches(Path(root), r)})


def write_derived_splits(
    root: str | os.PathLike,
    idx: str,
    parent: str = "train",
    fraction: float = 0.1,
    seed: int = 0,
    dataset: str | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Carve ``root/idx/<parent>.txt`` with :func:`carve_val` and write ``<parent>_sub.txt``, ``val_sub.txt`` and
    ``derived.json`` to ``out_dir/<dataset>/<idx>/`` (default ``out_dir``: :data:`COMMITTED_DIR`; ``dataset``: the
    root's folder name). Returns that folder. The dataset folder is only read."""
    root = Path(root).resolve()
    src = root / idx / f"{parent}.txt"
    if not src.is_file():
        raise FileNotFoundError(f"parent split list {src} not found; pass --idx/--parent naming a list of {root}")
    names = read_names(src)
    train_sub, val_sub = carve_val(names, fraction, seed)
    out = Path(out_dir or COMMITTED_DIR).resolve() / (dataset or root.name) / idx
    if out == root or root in out.parents:
        raise ValueError(f"{out} lies inside the read-only dataset {root}; choose another out_dir")
    out.mkdir(parents=True, exist_ok=True)
    splits = {f"{parent}_sub": train_sub, "val_sub": val_sub}
    for k, v in splits.items():
        (out / f"{k}.txt").write_text("".join(f"{n}\n" for n in v))
    recipe = {
        "dataset": dataset or root.name, "idx": idx, "parent": parent, "parent_count": len(names),
        "parent_sha256": names_fingerprint(names), "fraction": fraction, "seed": seed,
        "method": "val_sub = the round(fraction*n) names with the smallest sha256(f'{seed}:{name}'); "
                  "both lists keep the parent's order (gaussconv_plugin.data.split_lists.carve_val)",
        "splits": {k: len(v) for k, v in splits.items()},
    }
    (out / "derived.json").write_text(json.dumps(recipe, indent=1) + "\n")
    return out


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description="Carve a fixed validation list out of a dataset's own split list.")
    ap.add_argument("--data-root", required=True, help="dataset folder (read only)")
    ap.add_argument("--idx", required=True, help="its split folder, e.g. 50_50")
    ap.add_argument("--parent", default="train", help="the list to carve (default train)")
    ap.add_argument("--fraction", type=float, default=0.1, help="validation share (default 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default=None, help="sub-folder name under --out (default: the root's folder name)")
    ap.add_argument("--out", default=None, help=f"output folder (default {COMMITTED_DIR})")
    a = ap.parse_args(argv)
    out = write_derived_splits(a.data_root, a.idx, a.parent, a.fraction, a.seed, a.dataset, a.out)
    print(out)
    return out


if __name__ == "__main__":
    main()
