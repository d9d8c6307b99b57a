"""tools.evidence.boxeval --finest-head-only: the coarser heads of a P2 model score nothing, the finest is untouched."""
import pytest
import torch

from tools.evidence import boxeval


@pytest.mark.parametrize("cfg", ["yolov8n-p2.yaml", "yolov8n-p2-gauss.yaml"])
def test_silence_coarse_heads_leaves_only_the_finest_level(cfg):
    from ultralytics.nn.tasks import DetectionModel

    import gaussconv_plugin.yolo  # noqa: F401  (registers the gauss yaml)

    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=1, verbose=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]  # (1, 4 + nc, anchors): the levels in stride order, 16² + 8² + 4² + 2²
    fine = (64 // 4) ** 2
    assert before.shape[-1] == fine + 8 ** 2 + 4 ** 2 + 2 ** 2
    assert before[0, 4, fine:].max() > 1e-3  # an untrained head scores its coarse anchors ~0.5: something to silence
    assert boxeval.silence_coarse_heads(model.model[-1]) == [8, 16, 32]
    with torch.no_grad():
        after = model(x)[0]
    assert after[0, 4, fine:].max() < 1e-12
    torch.testing.assert_close(after[0, :, :fine], before[0, :, :fine])  # the P2 level's boxes and scores unchanged
    torch.testing.assert_close(after[0, :4], before[0, :4])  # boxes of every level unchanged: only the scores move


def test_cli_names_a_bad_imgsz(tmp_path):
    w = tmp_path / "last.pt"
    w.write_bytes(b"")
    with pytest.raises(SystemExit, match="--imgsz big: give a whole number of pixels"):
        boxeval.main(["--weights", str(w), "--imgsz", "big"])
