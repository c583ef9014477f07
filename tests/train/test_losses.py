"""Training losses: rare defect pixels are learned, and a pixel's class is one of K."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from inspection.train.losses import balanced_bce, pixel_class_loss, soft_dice_loss  # noqa: E402


def _spot_target(batch: int = 4, size: int = 64) -> torch.Tensor:
    target = torch.zeros(batch, 1, size, size)
    for i in range(batch):  # a 3 x 3 spot: 0.2 % of the pixels
        target[i, 0, 10 + 9 * i : 13 + 9 * i, 20:23] = 1.0
    return target


def test_balanced_bce_weighs_the_rare_defect_as_much_as_the_clean_pixels():
    target = _spot_target()
    missed = torch.full_like(target, -4.0)  # says "clean" everywhere, spot included
    found = torch.where(target > 0, 4.0, -4.0)
    assert balanced_bce(missed, target) > 4.0  # a plain mean would be about 0.03
    assert balanced_bce(found, target) < 0.05


def _spot_batch(generator: torch.Generator, batch: int = 8, size: int = 48):
    image = torch.rand(batch, 1, size, size, generator=generator) * 0.5
    target = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        y, x = (int(v) for v in torch.randint(4, size - 7, (2,), generator=generator))
        image[i, 0, y : y + 3, x : x + 3] += 0.4  # a faint 3 x 3 spot: 0.4 % of the pixels
        target[i, 0, y : y + 3, x : x + 3] = 1.0
    return image, target


def test_a_small_net_learns_a_rare_faint_spot():
    """A net (not a free map: its pixels share weights) learns 3-pixel spots from the
    balanced loss and Dice, and finds them on images it did not see."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(8, 1, 3, padding=1)
    )
    torch.nn.init.constant_(net[-1].bias, -4.6)  # the model's 1 % prior
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(150):
        image, target = _spot_batch(g)
        logits = net(image)
        loss = balanced_bce(logits, target) + soft_dice_loss(logits[:, 0], target[:, 0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    image, target = _spot_batch(g)
    with torch.no_grad():
        p = torch.sigmoid(net(image))
    assert p[target > 0].mean() > 0.5 and p[target == 0].mean() < 0.05


def test_pixel_class_loss_is_a_softmax_over_classes_at_defect_pixels():
    k, size = 3, 8
    target = torch.zeros(1, k, size, size)
    target[0, 1, 2:4, 2:4] = 1.0  # class 1 at four pixels
    weight = torch.ones(1, 1, size, size)
    right = torch.zeros(1, k, size, size)
    right[0, 1] = 10.0
    wrong = torch.zeros(1, k, size, size)
    wrong[0, 2] = 10.0
    assert pixel_class_loss(right, target, weight) < 1e-3
    assert pixel_class_loss(wrong, target, weight) > 9.0
    # Clean pixels, and pixels of a generic anomaly (weight 0), teach no class.
    assert pixel_class_loss(wrong, torch.zeros_like(target), weight) == 0.0
    assert pixel_class_loss(wrong, target, torch.zeros_like(weight)) == 0.0


def test_the_rim_term_punishes_a_halo_around_the_defect():
    target = _spot_target()
    tight = torch.where(target > 0, 4.0, -4.0)
    halo = torch.where(torch.nn.functional.max_pool2d(target, 7, 1, 3) > 0, 4.0, -4.0)
    # Without the rim term a halo of 40 px among 16k clean ones costs almost nothing...
    assert balanced_bce(halo, target) - balanced_bce(tight, target) < 0.1
    # ...with it, the halo costs as much as missing the defect would.
    assert balanced_bce(halo, target, rim_px=4) - balanced_bce(tight, target, rim_px=4) > 2.0
