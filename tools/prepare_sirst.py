#!/usr/bin/env python
"""Convert SIRST (read-only, from where it lies) to a YOLO or COCO dataset in a cache/temp folder.

    python tools/prepare_sirst.py                          # YOLO, all images -> ~/.cache/gaussconv_plugin/sirst_yolo
    python tools/prepare_sirst.py --limit 24 --out /tmp/s  # first 24 names of each split
    python tools/prepare_sirst.py --format coco            # COCO json (gaussconv_plugin.data.coco_format)

YOLO: train <- trainval, val <- test (the standard SIRST protocol has no separate validation set); labels from
the masks' connected components; images whose VOC xml disagrees with the mask are counted and listed in
<out>/voc_problems.txt. Prints the path of data.yaml (YOLO) or of the COCO folder on the last line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gaussconv_plugin.data.sirst import cache_dir, sirst_root  # noqa: E402


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--format", choices=("yolo", "coco"), default="yolo", help="output format (default yolo)")
    ap.add_argument("--root", default=None, help="SIRST root (default: $GAUSSCONV_SIRST_ROOT or ../shared/data/sirst)")
    ap.add_argument("--out", default=None,
                    help="output folder (default: cache_dir('sirst_yolo') for yolo, prepare_coco's default for coco)")
    ap.add_argument("--limit", type=int, default=None, help="keep the first N names of each split (tests)")
    ap.add_argument("--idx", default="idx_427", help="split folder: idx_427 (default) or idx_320")
    ap.add_argument("--rgb", action="store_true", help="YOLO: write 3-channel PNGs instead of grayscale")
    a = ap.parse_args(argv)
    root = sirst_root(a.root)
    if a.format == "yolo":
        from gaussconv_plugin.data.yolo_format import prepare_yolo, read_manifest

        out = Path(a.out) if a.out else cache_dir("sirst_yolo")
        data_yaml = prepare_yolo(root, out, idx=a.idx, limit=a.limit, channels=3 if a.rgb else 1)
        m = read_manifest(data_yaml.parent)
        for split, c in m.get("counts", {}).items():
            print(f"{split}: {c['images']} images, {c['targets']} targets, {c['background_images']} without target")
        n = m.get("n_voc_problem_images", 0)
        print(f"VOC xml disagrees with the mask for {n} image(s) (labels come from the masks); "
              f"see {data_yaml.parent / 'voc_problems.txt'}")
        print(data_yaml)
        return data_yaml
    from gaussconv_plugin.data.coco_format import prepare_coco

    # default folder: prepare_coco's own (default_coco_dir: one per idx/limit under the cache)
    res = prepare_coco(root, a.out, splits=("trainval", "test"), idx=a.idx, limit=a.limit)
    print(res)
    return Path(res)


if __name__ == "__main__":
    main()
