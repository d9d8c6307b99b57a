"""tools/evidence/stats.py and the marks of the tables built on it: the paired t-test's p-value, Holm's correction
over one Δ table (the ``†`` of ``ablation.md`` and of ``area_pd``), and re-rendering published tables."""
from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools.evidence import area_pd, components, report, stats  # noqa: E402

STOCK = [0.50, 0.60, 0.55, 0.52, 0.58]
#: per-seed differences to stock: large and steady / small but steady (p 0.033 alone) / none
STRONG = [0.10, 0.11, 0.09, 0.10, 0.12]
BORDER = [0.02, 0.05, 0.01, 0.04, 0.01]
NULL = [0.03, -0.02, 0.01, -0.01, 0.00]


def test_p_value_is_the_paired_t_test_and_agrees_with_the_interval():
    from scipy.stats import ttest_rel

    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 6)
        ref = {s: rng.uniform(0.4, 0.9) for s in range(n)}
        shift = rng.uniform(-0.1, 0.1)
        val = {s: ref[s] + shift + rng.gauss(0, 0.05) for s in range(n)}
        d = stats.paired_difference(val, ref)
        want = ttest_rel([val[s] for s in range(n)], [ref[s] for s in range(n)]).pvalue
        assert d["p"] == pytest.approx(want, rel=1e-9)
        lo, hi = d["ci95"]
        assert (d["p"] < stats.ALPHA) == (not lo <= 0 <= hi)  # the `*` of a cell is its t-test at 5 %
    assert math.isnan(stats.paired_difference({0: 1.0}, {0: 0.5})["p"])  # one seed: no test
    assert math.isnan(stats.paired_difference({0: 0.2, 1: 0.3}, {0: 0.1, 1: 0.2})["p"])  # same on every seed


def test_holm_adjusts_one_family_step_down():
    assert stats.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    # monotone in the sorted order, capped at 1, NaN untested and not counted in the family
    q = stats.holm({"a": 0.02, "b": float("nan"), "c": 0.5, "d": 0.001})
    assert q["d"] == pytest.approx(0.003) and q["a"] == pytest.approx(0.04) and q["c"] == pytest.approx(0.5)
    assert math.isnan(q["b"])
    assert stats.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}  # 2 × 0.6 capped; y never below x
    rng = random.Random(1)
    ps = {i: rng.random() ** 3 for i in range(12)}
    adj = stats.holm(ps)
    assert all(ps[i] <= adj[i] <= min(1.0, 12 * ps[i]) for i in ps)  # between unadjusted and Bonferroni
    assert stats.holm({}) == {}


def _records(part: str = "yolo") -> list[dict]:
    key = "mAP50" if part == "yolo" else "mIoU"
    out = []
    for v, d in [("stock", [0.0] * 5), ("gsconv", STRONG), ("diff", BORDER), ("both", NULL)]:
        out += [{"part": part, "variant": v, "seed": s, "epochs": 3, "sec_per_epoch": 1.0, "wall_s": 3.0,
                 "commit": "c", "weights": "w", "metrics": {key: STOCK[s] + d[s]}} for s in range(5)]
    return out


def test_the_dagger_marks_only_what_survives_holm_over_the_table():
    s = report.summarize(_records())["yolo"]
    strong, border, null = (s[v]["paired"]["mAP50"] for v in ("gsconv", "diff", "both"))
    assert border["p"] < stats.ALPHA < border["p_holm"]  # excludes 0 alone, not over the 3 cells of the table
    assert strong["p_holm"] == pytest.approx(3 * strong["p"]) and strong["p_holm"] < stats.ALPHA
    assert null["p_holm"] == pytest.approx(null["p"])  # the largest p of the table keeps its own value
    md = report.markdown(report.summarize(_records()), {"command": "x", "commit": "c", "date": "d", "machine": "m"})
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ") and "[" in line}
    assert rows["| + GaussianShapedConv"].endswith("* † |")
    assert rows["| + diff scale loss"].endswith("] * |")
    assert rows["| both"].endswith("] |")
    assert "`†` marks one that still holds after Holm's correction" in md


def test_a_table_refuses_two_runs_of_one_seed_or_two_protocols_in_one_part():
    """Pairing by seed keeps one run per seed: a second run of the same (part, variant, seed), or runs of another
    schedule beside the first's, would be paired or averaged silently; both are one line naming the fix."""
    recs = _records("unet")
    with pytest.raises(SystemExit, match="two runs of unet/gsconv/2 .* keep one"):
        report.summarize(recs + [dict(recs[7])])
    longer = [dict(r, epochs=30) if r["variant"] == "diff" else r for r in recs]
    with pytest.raises(SystemExit, match="the unet runs differ in epochs, split or dataset"):
        report.summarize(longer)
    other = [dict(r, dataset={"name": "irstd1k"}) if r["seed"] == 4 else r for r in recs]
    with pytest.raises(SystemExit, match="publish each protocol in its own folder"):
        report.summarize(other)
    assert report.summarize([dict(r, part="yolo") if r["variant"] == "diff" else r for r in recs])  # parts apart


def test_a_variant_with_no_pair_on_one_hardware_is_named_not_dropped():
    """A variant whose every seed trained on other hardware than the reference's run of that seed has no paired
    difference: the table says so (the Δ table without its row read as "not run"), and a row pooling runs of
    several hardware says that its means pool them."""
    cpu, gpu = "2-core CPU (AMD EPYC)", "NVIDIA H100 80GB HBM3 GPU + 16-core CPU"
    recs = [dict(r, machine=gpu if r["variant"] == "stock" and r["seed"] == 0 else cpu) for r in _records("unet")]
    recs = [r for r in recs if not (r["variant"] == "gsconv" and r["seed"] > 0)]  # gsconv: seed 0 only, on the CPU
    s = report.summarize(recs)["unet"]
    assert s["gsconv"]["paired"] == {} and s["diff"]["paired"]["mIoU"]["seeds"] == [1, 2, 3, 4]
    md = report.markdown({"unet": s}, {"command": "x", "commit": "c", "date": "d", "machine": "m"})
    assert ("No paired difference for + GaussianShapedConv (unet): no seed of it trained on the same hardware as "
            "the reference `stock`'s run of that seed.") in md
    assert "The means of stock (unet) pool runs of several hardware" in md


def test_a_last3_figure_the_curves_no_longer_support_is_dropped():
    """``mIoU_last3`` is derived from the curves: where they show the last epochs were not all validated, a value
    stored by an earlier render is removed rather than kept; without curves a stored one stays."""
    rec = {"part": "unet", "variant": "stock", "seed": 0, "epochs": 4, "metrics": {"mIoU": 0.5, "mIoU_last3": 0.9},
           "curves": {"val_epoch": [2, 3, 4], "mIoU": [0.1, 0.2, 0.3]}}
    assert report._with_derived(rec)["metrics"]["mIoU_last3"] == pytest.approx(0.2)
    skipped = dict(rec, curves={"val_epoch": [1, 2, 4], "mIoU": [0.1, 0.2, 0.3]})
    assert "mIoU_last3" not in report._with_derived(skipped)["metrics"]
    assert report._with_derived(dict(rec, curves={}))["metrics"]["mIoU_last3"] == 0.9


def test_curves_are_averaged_on_the_epoch_not_the_position():
    from tools.evidence.plots import aligned

    a = {"val_epoch": [4, 8, 12, 16], "mIoU": [0.1, 0.2, 0.3, 0.4]}
    b = {"val_epoch": [4, 12, 16], "mIoU": [0.5, 0.6, 0.7]}  # its epoch-8 validation skipped
    x, y = aligned([a, b], "val_epoch", "mIoU")
    assert x == [4, 12, 16] and y.tolist() == [[0.1, 0.3, 0.4], [0.5, 0.6, 0.7]]
    x, y = aligned([a, {"val_epoch": [], "mIoU": []}], "val_epoch", "mIoU")
    assert x == [] and y.shape == (2, 0)


def test_rerender_rewrites_tables_from_the_published_runs_only(tmp_path, capsys):
    pub = tmp_path / "pub"
    pub.mkdir()
    meta = {"command": "python tools/ablation.py --report-only", "commit": "c", "date": "d", "machine": "m"}
    report.write_tables(_records("unet"), pub, meta)
    csv_before = (pub / "results.csv").read_text()
    md_before = (pub / "ablation.md").read_text()
    data = json.loads((pub / "results.json").read_text())
    for row in data["summary"]["unet"].values():  # a table of an older version: no p-values, no daggers
        for d in row.get("paired", {}).values():
            d.pop("p"), d.pop("p_holm")
    (pub / "results.json").write_text(json.dumps(data))
    (pub / "ablation.md").write_text(md_before.replace(" †", ""))

    report.main([str(pub)])
    assert capsys.readouterr().out.strip() == f"re-rendered {pub / 'ablation.md'}"
    new = json.loads((pub / "results.json").read_text())
    assert new["runs"] == data["runs"] and (pub / "results.csv").read_text() == csv_before
    assert new["meta"]["rerendered_by"] == f"python -m tools.evidence.report {pub}"
    assert new["meta"]["command"] == meta["command"]
    assert new["summary"]["unet"]["gsconv"]["paired"]["mIoU"]["p_holm"] < stats.ALPHA
    md = (pub / "ablation.md").read_text()
    assert md == md_before.replace("\n\n####", f"\n- tables re-rendered by: `python -m tools.evidence.report {pub}` "
                                   "(same runs)\n\n####", 1)

    # a folder without results.json: one line naming it, and no folder of the call is rewritten
    empty = tmp_path / "empty"
    empty.mkdir()
    (pub / "ablation.md").write_text("kept")
    with pytest.raises(SystemExit):
        report.main([str(pub), str(empty)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"no results.json in {empty}" in err and "tools/ablation.py --publish" in err
    assert (pub / "ablation.md").read_text() == "kept"


def test_paired_differences_to_another_reference(tmp_path, capsys):
    """``--reference both``: every other variant (stock included) is paired with ``both`` seed by seed; the tables
    say so; a folder keeps its reference until another is given, ``stock`` leaves it implicit; a reference the
    runs lack is one line naming the folder, and nothing is rewritten."""
    recs = _records("unet")
    s = report.summarize(recs, "both")["unet"]
    assert "paired" not in s["both"] and s["stock"]["n"] == 5
    for v, d in [("stock", [0.0] * 5), ("gsconv", STRONG), ("diff", BORDER)]:
        want = sum(a - b for a, b in zip(d, NULL)) / 5
        d = s[v]["paired"]["mIoU"]
        assert d["mean"] == pytest.approx(want) and d["seeds"] == list(range(5))
    assert report.summarize(recs)["unet"]["both"]["paired"]["mIoU"]["mean"] == pytest.approx(sum(NULL) / 5)

    pub = tmp_path / "pub"
    pub.mkdir()
    meta = {"command": "python tools/ablation.py --report-only", "commit": "c", "date": "d", "machine": "m"}
    report.write_tables(recs, pub, meta)
    md_stock = (pub / "ablation.md").read_text()
    assert "- Δ to stock:" in md_stock and "Paired difference to stock (unet):" in md_stock

    report.main(["--reference", "both", str(pub)])
    data = json.loads((pub / "results.json").read_text())
    md = (pub / "ablation.md").read_text()
    assert data["meta"]["reference"] == "both" and "paired" not in data["summary"]["unet"]["both"]
    assert "- Δ to both:" in md and "Paired difference to both (unet):" in md and "to stock" not in md
    delta = md.split("Paired difference to both (unet):")[1]
    assert "| stock | 0,1,2,3,4 |" in delta and "| both |" not in delta
    report.main([str(pub)])  # no option: the folder's own reference
    assert "Paired difference to both (unet):" in (pub / "ablation.md").read_text()
    report.main(["--reference", "stock", str(pub)])
    data = json.loads((pub / "results.json").read_text())
    assert "reference" not in data["meta"]
    rerendered = f"\n- tables re-rendered by: `python -m tools.evidence.report --reference stock {pub}` (same runs)"
    assert (pub / "ablation.md").read_text() == md_stock.replace("\n\n####", rerendered + "\n\n####", 1)
    capsys.readouterr()

    (pub / "ablation.md").write_text("kept")
    with pytest.raises(SystemExit, match=f"--reference gsconv-f03: {pub / 'results.json'} holds no run of it; "
                                         "choose one of its variants: stock, gsconv, diff, both"):
        report.main(["--reference", "gsconv-f03", str(pub)])
    assert (pub / "ablation.md").read_text() == "kept"


def test_ablation_reference_must_be_one_of_its_variants():
    from tools import ablation

    with pytest.raises(SystemExit, match="--reference stock: not among --variants \\(both both-noloc\\)"):
        ablation.main(["--parts", "unet", "--variants", "both", "both-noloc", "--reference", "stock", "--report-only"])


def test_area_pd_table_marks_holm_survivors():
    def rec(pds):
        return {"Pd_by_area": [{"area": b, "targets": 10, "Pd": p} for b, p in zip(["(0, 9]", "(9, inf]"], pds)]}

    base = [0.3, 0.4, 0.35, 0.32, 0.38]
    recs = {("stock", s): rec([base[s], base[s]]) for s in range(5)}
    recs.update({("gsconv", s): rec([base[s] - STRONG[s], base[s] + BORDER[s]]) for s in range(5)})
    recs.update({("diff", s): rec([base[s] + NULL[s], base[s] + NULL[s]]) for s in range(5)})
    rows = area_pd.table(recs).splitlines()[2:]
    cell = {(r.split(" | ")[0][2:], r.split(" | ")[2]): r.rsplit(" | ", 1)[1] for r in rows}
    assert cell[("gsconv", "(0, 9]")].endswith("* † |")  # 4 cells in the family: 4 × p still < 0.05
    assert cell[("gsconv", "(9, inf]")].endswith("] * |")  # p 0.033 alone, 0.099 after Holm
    assert cell[("diff", "(0, 9]")].endswith("] |") and cell[("stock", "(0, 9]")] == " |"


def test_the_two_by_two_contrasts_recover_each_component_and_their_interaction(tmp_path):
    """``stock``/``gsconv``/``diff``/``both`` as a 2 × 2 design: built as base + conv + loss + interaction per seed,
    the table's main effects, interaction and simple effects are those numbers; a seed whose four runs did not all
    train on one hardware is left out; a part without all four variants gets no such table; Fa enters the U-Net's
    Δ tables."""
    base = [0.50, 0.58, 0.55, 0.61]
    conv, loss, inter = [0.01, 0.02, 0.00, 0.01], [0.05, 0.06, 0.04, 0.05], [-0.02, -0.021, -0.019, -0.02]
    parts = {"stock": lambda s: 0.0, "gsconv": lambda s: conv[s], "diff": lambda s: loss[s],
             "both": lambda s: conv[s] + loss[s] + inter[s]}
    recs = [{"part": "unet", "variant": v, "seed": s, "epochs": 3, "sec_per_epoch": 1.0, "wall_s": 3.0,
             "commit": "c", "weights": "w", "machine": "2-core CPU (x)",
             "metrics": {"mIoU": base[s] + f(s), "Fa_e6": 100.0 - 1000 * f(s)}}
            for v, f in parts.items() for s in range(4)]
    recs[3]["machine"] = "NVIDIA H100 GPU + 16-core CPU (y)"  # stock seed 3 on a GPU: seed 3 pairs no more
    table = report.factorial(recs)["unet"]
    mean = lambda xs: sum(xs[:3]) / 3  # noqa: E731 - over seeds 0-2
    main_conv, main_loss, interaction, g_s, b_d, d_s, b_g = (table[label]["mIoU"] for label, _ in
                                                               components.CONTRASTS)
    assert main_conv["seeds"] == [0, 1, 2]
    assert main_conv["mean"] == pytest.approx(mean(conv) + mean(inter) / 2)
    assert main_loss["mean"] == pytest.approx(mean(loss) + mean(inter) / 2)
    assert interaction["mean"] == pytest.approx(mean(inter)) and interaction["p"] < stats.ALPHA
    assert g_s["mean"] == pytest.approx(mean(conv)) and d_s["mean"] == pytest.approx(mean(loss))
    assert b_d["mean"] == pytest.approx(mean(conv) + mean(inter))
    assert b_g["mean"] == pytest.approx(mean(loss) + mean(inter))
    assert table["interaction: both − diff − gsconv + stock"]["Fa_e6"]["mean"] == pytest.approx(-1000 * mean(inter))
    cells = [d for row in table.values() for d in row.values()]
    assert all(d["p_holm"] >= d["p"] for d in cells if not math.isnan(d["p"]))

    meta = {"command": "x", "commit": "c", "date": "d", "machine": "m"}
    report.write_tables(recs, tmp_path, meta)
    md = (tmp_path / "ablation.md").read_text()
    assert "Which component (unet): the 2 × 2 contrasts" in md and "ran on one hardware (0,1,2)" in md
    assert "| interaction: both − diff − gsconv + stock | -0.0200 ± 0.0010 [" in md
    assert "Δ Fa (×10⁻⁶)" in md
    assert json.loads((tmp_path / "results.json").read_text())["components"]["unet"].keys() == table.keys()
    two = [r for r in recs if r["variant"] in ("stock", "both")]
    assert report.factorial(two) == {}
    report.write_tables(two, tmp_path, meta)
    assert "Which component" not in (tmp_path / "ablation.md").read_text()
    assert "components" not in json.loads((tmp_path / "results.json").read_text())


PUBLISHED = sorted(p.parent for p in (REPO / "docs" / "ablation").rglob("results.json"))


@pytest.mark.parametrize("folder", PUBLISHED, ids=lambda p: str(p.relative_to(REPO / "docs" / "ablation")))
def test_every_published_table_is_what_the_renderer_writes_from_its_runs(folder):
    """A change to the tables' statistics or layout (a metric added to the Δ family, a new mark) reaches every
    published ``ablation.md``: each reads exactly as this version renders it from its own ``results.json``."""
    data = json.loads((folder / "results.json").read_text())
    meta = data["meta"]
    summary, contrasts = report.summarize(data["runs"], report.reference(meta)), report.factorial(data["runs"])
    assert (folder / "ablation.md").read_text() == report.markdown(summary, meta, contrasts), (
        f"{folder / 'ablation.md'} is not what the tables render today: python -m tools.evidence.report "
        f"{folder.relative_to(REPO)} (same runs), then check its README's figures")
