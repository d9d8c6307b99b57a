"""Target-level box metrics (gaussconv_plugin.boxmetrics): centre matching and the duplicate part of Fa."""
import math

import numpy as np
import pytest

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


def test_pd_by_area_bins_targets_by_box_area_and_counts_matches():
    acc = BoxTargetMetrics(3.0)
    tgt = np.array([[0, 0, 3, 3],          # 9 px²  -> bin (0, 9]
                    [20, 20, 24, 24],      # 16 px² -> bin (9, 25]
                    [40, 40, 50, 50]],     # 100 px² -> bin (64, inf]
                   float)
    det = np.array([[20, 20, 24, 24], [41, 41, 51, 51]], float)  # finds the 16 and the 100 px² targets
    acc.update(det, tgt)
    rows = acc.pd_by_area((9, 25, 64))
    assert [r["area"] for r in rows] == ["(0, 9]", "(9, 25]", "(25, 64]", "(64, inf]"]
    assert [(r["targets"], r["matched"]) for r in rows] == [(1, 0), (1, 1), (0, 0), (1, 1)]
    assert rows[0]["Pd"] == 0.0 and math.isnan(rows[2]["Pd"])
    assert sum(r["matched"] for r in rows) == acc.result()["n_matched"]


def test_pd_by_area_rejects_edges_that_do_not_increase():
    import pytest

    with pytest.raises(ValueError, match="strictly increasing"):
        BoxTargetMetrics().pd_by_area((25, 9))


def test_false_boxes_by_size_head_and_score():
    """Unmatched detections are described by long side, head stride and score; matched ones are not counted."""
    acc = BoxTargetMetrics()
    tgt = np.array([[10, 10, 14, 14]], float)  # one 4 px target, centre (12, 12)
    det = np.array([[10, 10, 14, 14],       # the match (stride 4)
                    [50, 50, 60, 56],       # 10 px false box (stride 8)
                    [0, 0, 150, 40],        # 150 px false box (stride 32)
                    [100, 100, 140, 120]])  # 40 px false box (stride 16)
    acc.update(det, tgt, det_strides=[4, 8, 32, 16], det_scores=[0.9, 0.4, 0.8, 0.5])
    fb = acc.result()["false_boxes"]
    assert fb["n"] == 3
    assert fb["share_long_ge32"] == pytest.approx(2 / 3) and fb["share_long_ge100"] == pytest.approx(1 / 3)
    assert fb["long_median"] == 40
    assert fb["by_stride"] == {"8": 1, "16": 1, "32": 1}
    assert fb["by_stride_long_ge100"] == {"8": 0, "16": 0, "32": 1}
    assert fb["score_median"] == pytest.approx(0.5) and fb["score_median_long_ge100"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="det_strides has 1 entries for 4 detections"):
        acc.update(det, tgt, det_strides=[4])


def test_false_boxes_without_detections_is_nan():
    acc = BoxTargetMetrics()
    acc.update(np.zeros((0, 4)), np.array([[1, 1, 3, 3]], float))
    fb = acc.result()["false_boxes"]
    assert fb["n"] == 0 and np.isnan(fb["share_long_ge100"]) and "by_stride" not in fb


def test_false_box_columns_name_the_heads_coarser_than_the_finest():
    from tools.evidence.boxeval import false_box_metrics

    fb = {"n": 4, "share_long_ge32": 0.5, "share_long_ge100": 0.25, "by_stride": {"4": 1, "8": 2, "32": 1},
          "model_strides": [4, 8, 16, 32]}
    assert false_box_metrics({"false_boxes": fb}) == {"false_ge32": 0.5, "false_ge100": 0.25, "false_coarse": 0.75}
    fb["model_strides"] = [8, 16, 32]  # a P3–P5 model: P3 is its finest head
    assert false_box_metrics({"false_boxes": fb})["false_coarse"] == 0.25
    assert false_box_metrics({"false_boxes": {"n": 0}}) == {} and false_box_metrics({}) == {}
