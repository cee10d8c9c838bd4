"""Multi-task heads and the cross-task cascade: stage-2 inputs, gradient flow, loss keys,
stage-1 compatibility with the multi-task model, and the mask loss weight."""
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.utils.events import EventStorage

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.data import DensePoseDatasetMapper
from densepose_ext.modeling import LOSS_NAMES, stage1_output_channels
from toys import tiny_cfg, tiny_model

SMALL_HEADS = {
    "MODEL.MASK_ON": True, "MODEL.KEYPOINT_ON": True,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 32, "MODEL.ROI_MASK_HEAD.NUM_CONV": 1,
    "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": (32, 32),
}
CASCADE = dict(SMALL_HEADS, **{"MODEL.ROI_HEADS.NAME": "DensePoseCascadeROIHeads"})


@pytest.fixture(scope="module")
def batch():
    dicts = [d for d in DatasetCatalog.get("densepose_embedded_mini")
             if any("dp_x" in a for a in d["annotations"])][:2]
    mapper = DensePoseDatasetMapper(
        True, augmentations=[T.ResizeShortestEdge(128, 128)], image_format="BGR",
        use_instance_mask=True, use_keypoint=True)
    return [mapper(d) for d in dicts]


def _losses(model, batch):
    model.train()
    with EventStorage(0):
        return model(batch)


def _grad_norms(model):
    """Sum of |grad| per top-level ROI-head module ("cascade.<task>" for stage 2)."""
    norms = {}
    for name, p in model.roi_heads.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "cascade" else parts[0]
        g = 0.0 if p.grad is None else p.grad.abs().sum().item()
        norms[key] = norms.get(key, 0.0) + g
    return norms


def test_stage1_output_channels_follow_config():
    ch = stage1_output_channels(tiny_cfg(**SMALL_HEADS))
    assert ch == {"densepose": 2 + 3 * 25, "mask": 1, "keypoint": 17}
    ch = stage1_output_channels(tiny_cfg(**{"MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS": 15}))
    assert ch["densepose"] == 15 + 75


@pytest.mark.parametrize("cross", [True, False])
def test_stage2_input_channels(cross):
    heads = tiny_model(**CASCADE, **{"MODEL.ROI_CASCADE_HEAD.CROSS_TASK": cross}).roi_heads
    pooled = 32  # FPN channels of tiny_cfg
    own = {"densepose": 77, "mask": 1, "keypoint": 17}
    for task, stage in heads.cascade.items():
        fed = sum(own.values()) if cross else own[task]
        assert stage.in_channels == pooled + fed, task
        assert stage.fuse.weight.shape[1] == pooled + fed
        assert heads.cascade_inputs[task] == (list(own) if cross else [task])


@pytest.mark.parametrize("cross", [True, False])
def test_stage2_losses_reach_stage1(batch, cross):
    model = tiny_model(**CASCADE, **{"MODEL.ROI_CASCADE_HEAD.CROSS_TASK": cross})
    losses = _losses(model, batch)
    (losses["loss_densepose_I"] + losses["loss_densepose_U"]).backward()  # stage 2 only
    g = _grad_norms(model)
    assert g["densepose_head"] > 0 and g["densepose_predictor"] > 0 and g["cascade.densepose"] > 0
    # cross links carry the DensePose stage-2 loss into the other tasks' stage 1; without
    # them it never reaches the mask / keypoint heads
    for task in ("mask_head", "keypoint_head"):
        assert (g[task] > 0) == cross, (task, g[task])
    assert g["cascade.mask"] == 0 and g["cascade.keypoint"] == 0


def test_cascade_loss_keys_and_stage1_weight(batch):
    names = list(LOSS_NAMES) + ["loss_mask", "loss_keypoint"]
    torch.manual_seed(0)
    losses = _losses(tiny_model(**CASCADE), batch)
    assert set(names) | {n + "_stage1" for n in names} <= set(losses)
    assert all(torch.isfinite(v) and v.item() > 0 for k, v in losses.items() if k in names)
    half = _losses(tiny_model(**CASCADE, **{"MODEL.ROI_CASCADE_HEAD.STAGE1_LOSS_WEIGHT": 0.5}),
                   batch)
    for n in names:  # same seed -> same weights and proposals: stage-1 losses halve
        assert half[n + "_stage1"].item() == pytest.approx(0.5 * losses[n + "_stage1"].item(),
                                                           rel=1e-4)
        assert half[n].item() == pytest.approx(losses[n].item(), rel=1e-4)


def test_mask_loss_weight(batch):
    base = _losses(tiny_model(**SMALL_HEADS), batch)
    double = _losses(tiny_model(**SMALL_HEADS, **{"MODEL.ROI_MASK_HEAD.LOSS_WEIGHT": 2.0}), batch)
    assert double["loss_mask"].item() == pytest.approx(2 * base["loss_mask"].item(), rel=1e-4)
    assert double["loss_keypoint"].item() == pytest.approx(base["loss_keypoint"].item(), rel=1e-4)


def _predict(model, batch):
    model.eval()
    with torch.no_grad():
        return [o["instances"] for o in model([{"image": b["image"]} for b in batch])]


def test_stage1_is_the_multitask_model(batch):
    """A multi-task checkpoint initialises stage 1: with TEST_STAGE 1 the cascade predicts
    exactly what the multi-task model predicts; stage 2 predicts something else."""
    multitask = tiny_model(seed=3, **SMALL_HEADS)
    cascade = tiny_model(seed=4, **CASCADE, **{"MODEL.ROI_CASCADE_HEAD.TEST_STAGE": 1})
    missing, unexpected = cascade.load_state_dict(multitask.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("roi_heads.cascade.") for k in missing)
    ref, first = _predict(multitask, batch), _predict(cascade, batch)
    for a, b in zip(ref, first):
        assert len(a) == len(b) > 0
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.allclose(a.pred_densepose.u, b.pred_densepose.u)
        assert torch.allclose(a.pred_masks.float(), b.pred_masks.float())
        assert torch.allclose(a.pred_keypoints, b.pred_keypoints)
    cascade.roi_heads.test_stage = 2
    second = _predict(cascade, batch)
    assert {"pred_densepose", "pred_masks", "pred_keypoints"} <= set(second[0].get_fields())
    assert not torch.allclose(second[0].pred_densepose.u, first[0].pred_densepose.u)


def test_cascade_with_the_densepose_decoder(batch):
    """DECODER_ON (upstream's default): DensePose stages pool the decoder's map, whose width
    (DECODER_NUM_CLASSES) sets DensePose's stage-2 fusion; training reaches the decoder."""
    decoder = {"MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON": True,
               "MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS": 16,
               "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES": 24}
    model = tiny_model(**CASCADE, **decoder)
    heads = model.roi_heads
    assert heads.cascade["densepose"].in_channels == 24 + 77 + 1 + 17
    assert heads.cascade["densepose"].fuse.weight.shape[0] == 24
    assert heads.cascade["mask"].in_channels == 32 + 77 + 1 + 17  # masks: FPN levels
    losses = _losses(model, batch)
    assert all(torch.isfinite(v) for v in losses.values())
    (losses["loss_densepose_U"] + losses["loss_densepose_I_stage1"]).backward()
    assert _grad_norms(model)["decoder"] > 0
    out = _predict(model, batch)
    assert out[0].pred_densepose.u.shape[1:] == (25, 28, 28)
