"""Target-level box metrics (gaussconv_plugin.boxmetrics): centre matching and the duplicate part of Fa."""
import math

import numpy as np

from gaussconv_plugin.boxmetrics import BoxTargetMetrics, match_targets


def test_match_is_one_to_one_by_centre_distance():
    tgt = np.array([[10, 10, 16, 16], [40, 40, 46, 46]], float)
    det = np.array([[11, 10, 17, 16], [10.5, 10, 16.5, 16], [80, 80, 86, 86]], float)
    # both detections lie within 3 px of target 0; the closer one (index 1, 0.5 px) takes it; target 1 has none
    assert match_targets(det, tgt, 3.0).tolist() == [1, -1]


def test_duplicate_fa_counts_a_second_box_on_a_found_target_only():
    acc = BoxTargetMetrics(3.0)
    tgt = np.array([[10, 10, 16, 16]], float)
    det = np.array([[10, 10, 16, 16],      # matches the target
                    [14, 14, 20, 20],      # centre 4 px off: unmatched, overlaps the found target -> duplicate
                    [60, 60, 66, 66]],     # background
                   float)
    acc.update(det, tgt)
    # a missed target: a box over it whose centre is too far is not a duplicate (nothing was found there)
    acc.update(np.array([[30, 30, 36, 36]], float), np.array([[26, 26, 32, 32]], float))
    acc.update(np.array([[5, 5, 9, 9]], float), np.zeros((0, 4)))  # empty image: background
    r = acc.result()
    assert (r["n_false"], r["n_false_duplicate"], r["n_matched"]) == (4, 1, 1)
    assert r["Fa_duplicate_per_img"] == 1 / 3 and r["Fa_per_img"] == 4 / 3
    assert r["Fa_per_empty_img"] == 1.0 and r["Pd"] == 0.5


def test_no_images_gives_nan_not_zero():
    r = BoxTargetMetrics().result()
    assert math.isnan(r["Fa_duplicate_per_img"]) and math.isnan(r["Pd"])
