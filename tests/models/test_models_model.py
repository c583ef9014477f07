"""DefectModel, heads and fusion, and the numpy twin of the output."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inspection.models import Detection, create_model  # noqa: E402
from inspection.models.heads import noisy_or_logit  # noqa: E402
from inspection.models.preprocess import PreprocessOptions, preprocess  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny")


def test_without_audio_the_part_logit_is_the_image_logit(tiny):
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, 64, 64))
    assert out.audio_logit is None and out.audio_tokens is None
    assert torch.equal(out.part_logit, out.image_logit)


def test_noisy_or_fusion():
    a = torch.tensor([-3.0, 0.0, 2.0, 40.0, -40.0])
    assert torch.allclose(noisy_or_logit(a, torch.full_like(a, -60.0)), a, atol=1e-4)
    for b in (torch.tensor(-1.0), torch.tensor(1.5)):
        fused = noisy_or_logit(a, b.expand_as(a))
        p = 1 - (1 - torch.sigmoid(a.double())) * (1 - torch.sigmoid(b.double()))
        assert torch.all(fused >= torch.maximum(a, b) - 1e-5)  # either modality can flag
        finite = p < 1
        assert torch.allclose(fused[finite].double(), torch.logit(p[finite]), atol=1e-4)


def test_audible_only_defect_raises_the_part_score(tiny):
    fusion = tiny.fusion
    image = torch.tensor([-6.0])
    assert fusion(image, torch.tensor([6.0])) > 5.0
    assert fusion(image, None) == image


def test_wrong_image_size_is_refused(tiny):
    with pytest.raises(ValueError, match="preprocess"):
        tiny(torch.zeros(1, 3, 32, 32))


def test_every_parameter_gets_a_gradient():
    model = create_model("tiny").train()
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 80, 100))
    loss = sum(t.float().mean() for t in (out.maps, out.class_logits, out.part_logit))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing  # an unused parameter would break DistributedDataParallel


def test_numpy_twin(tiny):
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, 64, 64), torch.randn(2, 80, 90))  # 90 frames: padded
    det = out.numpy(classes=tiny.config.classes)
    assert isinstance(det, Detection) and len(det) == 2
    np.testing.assert_allclose(det.maps, out.maps.numpy())
    assert det.anomaly_map.shape == (2, 64, 64) and det.class_maps.shape == (2, 6, 64, 64)
    for score in (det.image_score, det.class_scores, det.audio_score, det.part_score):
        assert score.dtype == np.float32 and ((score >= 0) & (score <= 1)).all()
    np.testing.assert_allclose(det.part_score, torch.sigmoid(out.part_logit).numpy(), rtol=1e-6)
    assert set(det.class_score_dict(1)) == set(tiny.config.classes)
    assert det.without_audio().audio_logit is None
    # A pixel's class is one of K: the class maps share out its anomaly probability.
    np.testing.assert_allclose(det.class_maps.sum(1), det.anomaly_map, rtol=1e-5, atol=1e-6)


def test_tiles_merge_back_to_the_full_image(tiny):
    image = np.random.default_rng(0).integers(0, 255, (70, 150), dtype=np.uint8)
    tiles = preprocess(image, PreprocessOptions.from_config(tiny.config))
    with torch.no_grad():
        det = tiny(torch.from_numpy(tiles.images)).numpy()
    merged = det.merge_tiles(tiles.layout)
    assert merged.maps.shape == (1, 7, 70, 150)
    assert merged.image_logit[0] == det.image_logit.max()
    assert merged.patch_tokens.shape == (1, len(tiles.layout) * 16, 32)
