"""DensePose losses: point sampling against hand-computed bilinear values, mask resampling,
loss values on crafted predictions, zero-DensePose batches, and overfitting real images."""
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.data import DensePoseDatasetMapper
from densepose_ext.modeling import LOSS_NAMES, DensePoseChartLoss
from densepose_ext.modeling.point_sampling import (
    frame_to_image,
    image_to_box_normalized,
    resample_segm_to_boxes,
    sample_at_points,
)
from densepose_ext.structures import DensePoseChartOutput, DensePoseData, DensePoseList
from toys import tiny_cfg, tiny_model


def test_point_sampling_matches_hand_bilinear():
    pred = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) ** 1.5
    box = torch.tensor([[10.0, 20.0, 50.0, 60.0]])  # 4 cells of 10 px; centres at 15, 25, ..
    gt_box = torch.tensor([[0.0, 0.0, 80.0, 80.0]])
    # image point (27, 43): cell coordinates (27-10)/10-0.5 = 1.2, (43-20)/10-0.5 = 1.8
    x, y = frame_to_image(torch.tensor([[27 * 256 / 80]]), torch.tensor([[43 * 256 / 80]]), gt_box)
    assert torch.allclose(torch.cat([x, y], 1), torch.tensor([[27.0, 43.0]]))
    got = sample_at_points(pred, image_to_box_normalized(x, y, box))
    p = pred[0, 0]
    want = (0.8 * 0.2 * p[1, 1] + 0.2 * 0.2 * p[1, 2] + 0.8 * 0.8 * p[2, 1] + 0.2 * 0.8 * p[2, 2])
    assert got.shape == (1, 1, 1) and torch.allclose(got[0, 0, 0], want)
    # a cell centre returns the cell value exactly
    c = sample_at_points(pred, image_to_box_normalized(torch.tensor([[35.0]]),
                                                        torch.tensor([[25.0]]), box))
    assert torch.allclose(c[0, 0, 0], p[0, 2])


def test_segm_resampled_nearest_into_proposal_grid():
    segm = torch.zeros(1, 256, 256, dtype=torch.uint8)
    segm[:, :, :128] = 1
    segm[:, :, 128:] = 2
    segm[:, 200:, :] = 14
    gt_box = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    box = torch.tensor([[50.0, 0.0, 150.0, 100.0]])  # right half of GT + outside
    out = resample_segm_to_boxes(segm, gt_box, box, 4)
    # centres x = 62.5, 87.5 (frame 160, 224 -> label 2), 112.5, 137.5 (outside -> 0);
    # centre y = 87.5 is frame row 224 -> 14
    assert out[0].tolist() == [[2, 2, 0, 0], [2, 2, 0, 0], [2, 2, 0, 0], [14, 14, 0, 0]]


def _proposals(points, segm=None):
    d = DensePoseData(*points, segm=segm)
    p = Instances((100, 100))
    p.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 64.0, 64.0]]))
    p.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 64.0, 64.0]]))
    p.gt_densepose = DensePoseList([d])
    return [p]


def test_losses_on_crafted_predictions():
    s = 8
    parts = torch.tensor([3, 7, 24])
    pts = (torch.tensor([20.0, 100.0, 250.0]), torch.tensor([30.0, 128.0, 5.0]), parts,
           parts / 25.0, 1 - parts / 25.0)
    segm = torch.zeros(256, 256, dtype=torch.uint8)
    segm[:128] = 5
    u = torch.arange(25.0).view(1, 25, 1, 1).expand(1, 25, s, s) / 25.0
    fine = torch.zeros(1, 25, s, s)
    coarse = torch.zeros(1, 2, s, s)
    coarse[0, 1, : s // 2] = 50.0  # confident foreground exactly on the top half
    coarse[0, 0, s // 2:] = 50.0
    out = DensePoseChartOutput(coarse, fine, u.clone(), 1 - u)
    loss = DensePoseChartLoss(tiny_cfg())(out, _proposals(pts, segm))
    assert set(loss) == set(LOSS_NAMES)
    # U/V of every part channel are exact -> zero; fine logits uniform -> log(25) * PART_WEIGHTS
    assert loss["loss_densepose_U"].item() == pytest.approx(0.0, abs=1e-6)
    assert loss["loss_densepose_V"].item() == pytest.approx(0.0, abs=1e-6)
    assert loss["loss_densepose_I"].item() == pytest.approx(torch.log(torch.tensor(25.0)).item())
    assert loss["loss_densepose_S"].item() == pytest.approx(0.0, abs=1e-6)
    # shifting U by 0.1 everywhere costs smooth-L1 0.5 * 0.1^2 per point, summed, x 0.01
    out.u += 0.1
    loss = DensePoseChartLoss(tiny_cfg())(out, _proposals(pts, segm))
    assert loss["loss_densepose_U"].item() == pytest.approx(3 * 0.005 * 0.01, rel=1e-4)


def test_points_outside_proposal_are_dropped():
    pts = (torch.tensor([20.0]), torch.tensor([30.0]), torch.tensor([3]), torch.tensor([0.5]),
           torch.tensor([0.5]))
    props = _proposals(pts)
    props[0].proposal_boxes = Boxes(torch.tensor([[40.0, 40.0, 64.0, 64.0]]))  # point outside
    out = DensePoseChartOutput(torch.randn(1, 2, 4, 4), torch.randn(1, 25, 4, 4),
                               torch.randn(1, 25, 4, 4), torch.randn(1, 25, 4, 4))
    loss = DensePoseChartLoss(tiny_cfg())(out, props)
    assert all(loss[k].item() == 0.0 for k in LOSS_NAMES[:3])  # no segm: S is zero too
    assert loss["loss_densepose_S"].item() == 0.0


def _batch(dicts, with_densepose=True):
    mapper = DensePoseDatasetMapper(
        True, augmentations=[T.ResizeShortestEdge(128, 128)], image_format="BGR")
    batch = [mapper(d) for d in dicts]
    if not with_densepose:
        for b in batch:
            inst = b["instances"]
            inst.gt_densepose = DensePoseList([None] * len(inst))
    return batch


@pytest.fixture(scope="module")
def mini_dicts():
    dicts = DatasetCatalog.get("densepose_embedded_mini")
    annotated = [d for d in dicts if any("dp_x" in a for a in d["annotations"])]
    return annotated[:2]


@pytest.mark.parametrize("decoder", [False, True])
def test_zero_densepose_batch_gives_zero_losses_with_grads(mini_dicts, decoder):
    model = tiny_model(**{"MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON": decoder}).train()
    with EventStorage(0):
        losses = model(_batch(mini_dicts, with_densepose=False))
    for k in LOSS_NAMES:
        assert losses[k].item() == 0.0 and losses[k].requires_grad
    sum(losses[k] for k in LOSS_NAMES).backward()
    checked = 0
    for name, p in model.roi_heads.named_parameters():
        if name.startswith(("densepose_head", "densepose_predictor", "decoder")):
            assert p.grad is not None and torch.all(p.grad == 0), name
            checked += name.startswith("decoder")
    assert (checked > 0) == decoder


def test_losses_decrease_when_overfitting_two_images(mini_dicts):
    model = tiny_model(seed=1).train()
    batch = _batch(mini_dicts)
    assert sum(int(b["instances"].gt_densepose.is_annotated.sum()) for b in batch) > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    history = []
    with EventStorage(0):
        for _ in range(60):
            losses = model(batch)
            assert all(torch.isfinite(v) for v in losses.values())
            opt.zero_grad()
            sum(losses.values()).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            history.append({k: losses[k].item() for k in LOSS_NAMES})
    for k in ("loss_densepose_I", "loss_densepose_S", "loss_densepose_U"):
        first = sum(h[k] for h in history[:5]) / 5
        last = sum(h[k] for h in history[-5:]) / 5
        assert last < 0.8 * first, (k, first, last)
