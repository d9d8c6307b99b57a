"""tools/evidence/pixel_push: which way the mask loss pushes each pixel of a U-Net checkpoint (real SIRST images)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmengine")

from tools.evidence.pixel_push import main, measure, pixel_push  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GAUSS = REPO / "mmdet_cfgs" / "unet_gauss_diff_cpu.py"


def test_counts_on_a_uniform_map():
    """p = 0.005 everywhere, a 4×4 target (P = 5 < T = 16): with ``all`` diff's area term raises every background
    pixel; with ``directed`` nothing goes the wrong way and the total push is the same order."""
    t = torch.zeros(1, 1, 32, 32)
    t[..., 14:18, 14:18] = 1
    logits = torch.full_like(t, math.log(0.005 / 0.995))
    a = pixel_push(logits, t, "diff", "all")
    assert (a["images"], a["under"], a["bg"], a["tg"]) == (1, 1, 1008, 16)
    assert a["bg_up"] == 1008 and a["tg_down"] == 0 and 0 < a["wrong"] < a["total"]
    d = pixel_push(logits, t, "diff", "directed")
    assert d["bg_up"] == d["tg_down"] == 0 and d["wrong"] == 0 and d["total"] > 0
    # MSHNet's location term (first moments not divided by the mass) pushes the target itself down at p = 0.02,
    # whatever the scale weight
    grey = torch.full_like(t, math.log(0.02 / 0.98))
    assert pixel_push(grey, t, "diff", "directed")["tg_down"] == 0
    assert pixel_push(grey, t, "diff", "directed", with_location=True)["tg_down"] == 16


def test_measure_a_checkpoint_with_its_dumped_config(tmp_path, capsys):
    """A freshly initialised U-Net saved as a run folder would hold it (checkpoint + one config beside): counts add
    up over 3 real SIRST images, ``directed`` has no wrong-way push, and a folder with no config fails clearly."""
    import gaussconv_plugin.mmdet  # noqa: F401
    from gaussconv_plugin.mmdet.runner import load_config
    from gaussconv_plugin.mmdet.segmentation import IRSTDSegmentor

    torch.manual_seed(0)
    cfg = load_config(str(GAUSS))
    model = IRSTDSegmentor(net=cfg.model.net, loss=cfg.model.loss)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": model.state_dict()}, run / "epoch_1.pth")
    cfg.dump(str(run / GAUSS.name))  # flattened, as MMEngine dumps it into a work dir
    r = main(["--weights", str(run / "epoch_1.pth"), "--split", "test", "--images", "3"])
    assert r["images"] == 3 and r["bg"] > 0 and r["tg"] > 0 and 0 <= r["wrong"] <= r["total"]
    assert "3 images of test" in capsys.readouterr().out
    d = measure(run / "epoch_1.pth", split="test", images=3, area_grad="directed")
    assert (d["bg"], d["tg"]) == (r["bg"], r["tg"]) and d["bg_up"] == d["tg_down"] == 0 and d["wrong"] == 0
    (run / "other.py").write_text("")
    with pytest.raises(SystemExit, match="holds 2 config files, not one; pass --config"):
        measure(run / "epoch_1.pth", split="test", images=1)
    with pytest.raises(SystemExit, match="'var' is not: use mode='diff'"):
        main(["--weights", str(run / "epoch_1.pth"), "--config", str(GAUSS), "--mode", "var",
              "--area-grad", "directed"])
