#!/usr/bin/env python
"""Carve a fixed validation list out of a dataset's own split list and write it with the package (deterministic).

    python tools/make_val_split.py --data-root ../shared/data/nudt_sirst --idx 50_50 --parent train \
        --fraction 0.1 --seed 0 --dataset nudt_sirst

rewrites gaussconv_plugin/data/splits/nudt_sirst/50_50/{train_sub,val_sub}.txt and derived.json identically
(see gaussconv_plugin/data/split_lists.py for the recipe and how read_split finds these lists). --out DIR writes
elsewhere. Prints the folder written.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gaussconv_plugin.data.split_lists import main  # noqa: E402

if __name__ == "__main__":
    main()
