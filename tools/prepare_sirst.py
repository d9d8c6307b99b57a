#!/usr/bin/env python
"""Convert SIRST or an IRSTD-layout dataset (read-only, where it lies) to a YOLO or COCO dataset in a cache/temp folder.

    python tools/prepare_sirst.py                          # YOLO, all images -> ~/.cache/gaussconv_plugin/sirst_yolo
    python tools/prepare_sirst.py --limit 24 --out /tmp/s  # first 24 names of each split
    python tools/prepare_sirst.py --format coco            # COCO json (gaussconv_plugin.data.coco_format)
    python tools/prepare_sirst.py --data-root ../shared/data/nudt_sirst --splits train:train val:test
                                                           # NUDT-SIRST -> ~/.cache/gaussconv_plugin/nudt_sirst_yolo
    python tools/prepare_sirst.py --data-root ../shared/data/nudt_sirst --splits train:train_sub val:val_sub test:test
                                                           # NUDT-SIRST with its committed validation carve
    python tools/prepare_sirst.py --root ../shared/data/irstd1k   # IRSTD-1k: train <- trainval, val <- test (512 px)
    python tools/prepare_sirst.py --root ../shared/data/irstd1k --splits train:trainval_sub val:val_sub test:test
                                                           # IRSTD-1k with its committed validation carve

The layout (SIRST v1: masks/<name>_pixels0.png, idx_427/; IRSTD, e.g. NUDT-SIRST, IRSTD-1k: masks/<name>.png and
one split folder such as 50_50/ or idx/) is detected from the folder; --idx defaults to the layout's split folder.
YOLO: train <- trainval, val <- test for SIRST (the standard SIRST protocol has no separate validation set),
train <- train, val <- test for an IRSTD folder (train <- trainval where its lists hold trainval but no train, as
IRSTD-1k's idx/{trainval,test}.txt); --splits YOLO_SPLIT:SOURCE_SPLIT pairs override that, with any list names of
the folder (and the validation carves committed for it, e.g. trainval_sub, val_sub). Labels
come from the masks' connected components; SIRST images whose VOC xml disagrees with the mask are counted and
listed in <out>/voc_problems.txt. NUDT-SIRST images are all 256x256: train YOLO on it with imgsz=256; IRSTD-1k's
are 512x512: imgsz=512. COCO: the source splits of --splits (the part after ':'), default those of YOLO's default
(SIRST, IRSTD-1k: trainval,test; NUDT-SIRST: train,test). Outputs go to the cache (gaussconv_plugin.data.cache_dir)
unless --out says otherwise, never into the dataset folder.
Prints the path of data.yaml (YOLO) or of the COCO folder on the last line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gaussconv_plugin.data.layout import default_splits, detect_layout  # noqa: E402
from gaussconv_plugin.data.sirst import sirst_root  # noqa: E402


def _pair(s: str) -> tuple[str, str]:
    if ":" not in s:
        return s, s
    a, b = s.split(":", 1)
    if not a or not b:
        raise argparse.ArgumentTypeError(f"--splits takes YOLO_SPLIT:SOURCE_SPLIT pairs, e.g. train:train (got {s!r})")
    return a, b


def main(argv=None) -> Path:
    """Parse the arguments and convert; bad data (a missing, corrupt or truncated file, a mask of another aspect
    ratio, a split list naming a missing file) exits with one line naming the file and the fix, nothing written."""
    try:
        return _main(argv)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"prepare_sirst.py: {e}") from None


def _main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", choices=("yolo", "coco"), default="yolo", help="output format (default yolo)")
    ap.add_argument("--data-root", "--root", dest="root", default=None,
                    help="dataset folder, SIRST v1 or IRSTD layout "
                         "(default: $GAUSSCONV_SIRST_ROOT or ../shared/data/sirst)")
    ap.add_argument("--out", default=None,
                    help="output folder (default: <cache>/<label>_yolo[-limit<N>], label 'sirst' for the default "
                         "SIRST folder, the folder name for the shared NUDT-SIRST / IRSTD-1k, <name>-<path hash> "
                         "for any other; prepare_coco's default for coco)")
    ap.add_argument("--limit", type=int, default=None, help="keep the first N names of each split (tests)")
    ap.add_argument("--idx", default=None,
                    help="split folder (default: idx_427 for SIRST; for an IRSTD folder the one holding the lists, "
                         "e.g. 50_50)")
    ap.add_argument("--splits", nargs="+", type=_pair, default=None, metavar="YOLO:SOURCE",
                    help="YOLO_SPLIT:SOURCE_SPLIT pairs (default train:trainval val:test; IRSTD train:train val:test, "
                         "or train:trainval val:test where the lists hold no train); for coco the source splits")
    ap.add_argument("--rgb", action="store_true", help="YOLO: write 3-channel PNGs instead of grayscale")
    a = ap.parse_args(argv)
    root = sirst_root(a.root)
    layout = detect_layout(root)
    train, ev = default_splits(layout, root)  # IRSTD-1k: trainval (its lists hold no train)
    if a.format == "yolo":
        from gaussconv_plugin.data.yolo_format import prepare_yolo, read_manifest

        splits = a.splits or (("train", train), ("val", ev))
        data_yaml = prepare_yolo(root, a.out, splits=splits, idx=a.idx, limit=a.limit, channels=3 if a.rgb else 1)
        m = read_manifest(data_yaml.parent)
        for split, c in m.get("counts", {}).items():
            print(f"{split}: {c['images']} images, {c['targets']} targets, {c['background_images']} without target")
        if layout == "sirst":
            n = m.get("n_voc_problem_images", 0)
            print(f"VOC xml disagrees with the mask for {n} image(s) (labels come from the masks); "
                  f"see {data_yaml.parent / 'voc_problems.txt'}")
        else:
            lo, hi = m.get("long_side", (0, 0))
            print(f"{layout} layout: labels from the masks' connected components (no VOC xml); "
                  f"image long side {lo}..{hi} px" + (f", train with imgsz={lo}" if lo == hi else ""))
        print(data_yaml)
        return data_yaml
    from gaussconv_plugin.data.coco_format import prepare_coco

    # default folder: prepare_coco's own (default_coco_dir: one per dataset/idx/limit under the cache)
    splits = list(dict.fromkeys(src for _, src in a.splits)) if a.splits else [train, ev]
    res = prepare_coco(root, a.out, splits=splits, idx=a.idx, limit=a.limit)
    print(res)
    return Path(res)


if __name__ == "__main__":
    main()
