"""DensePose R-CNN heads: output shapes, upstream parameter names, ROI heads beside mask and
keypoint heads, proposal selection, DensePoseChartOutput, and every shipped config builds."""
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

import densepose_ext.modeling  # noqa: F401  (registers DensePoseROIHeads)
from densepose_ext.config import add_densepose_config
from densepose_ext.modeling import (
    DensePoseChartPredictor,
    build_densepose_head,
    select_densepose_proposals,
)
from densepose_ext.structures import DensePoseChartOutput, DensePoseData, DensePoseList
from toys import CONFIGS, tiny_cfg, tiny_model


def test_head_and_predictor_shapes_and_upstream_names():
    cfg = tiny_cfg()
    head = build_densepose_head(cfg, 32)
    pred = DensePoseChartPredictor(cfg, head.n_out_channels)
    out = pred(head(torch.randn(3, 32, 7, 7)))
    assert isinstance(out, DensePoseChartOutput) and len(out) == 3
    assert tuple(out.coarse_segm.shape) == (3, 2, 28, 28)
    for t in (out.fine_segm, out.u, out.v):
        assert tuple(t.shape) == (3, 25, 28, 28)
    assert sorted(head.state_dict()) == [
        "body_conv_fcn1.bias", "body_conv_fcn1.weight", "body_conv_fcn2.bias",
        "body_conv_fcn2.weight"]
    assert sorted({k.split(".")[0] for k in pred.state_dict()}) == [
        "ann_index_lowres", "index_uv_lowres", "u_lowres", "v_lowres"]
    # upstream shapes: ConvTranspose2d weight (in, out, k, k)
    assert tuple(pred.index_uv_lowres.weight.shape) == (32, 25, 4, 4)
    assert tuple(pred.ann_index_lowres.weight.shape) == (32, 2, 4, 4)


def test_fifteen_coarse_channels_and_bad_settings():
    cfg = tiny_cfg(**{"MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS": 15})
    out = DensePoseChartPredictor(cfg, 8)(torch.randn(1, 8, 5, 5))
    assert tuple(out.coarse_segm.shape) == (1, 15, 20, 20)
    with pytest.raises(ValueError, match="NUM_COARSE_SEGM_CHANNELS"):
        DensePoseChartPredictor(
            tiny_cfg(**{"MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS": 3}), 8)
    with pytest.raises(ValueError, match="HEATMAP_SIZE"):
        tiny_model(**{"MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE": 56})


def _chart(n, s=4):
    g = torch.Generator().manual_seed(n)
    return DensePoseChartOutput(
        torch.randn(n, 2, s, s, generator=g), torch.randn(n, 25, s, s, generator=g),
        torch.rand(n, 25, s, s, generator=g), torch.rand(n, 25, s, s, generator=g))


def test_chart_output_indexing_cat_split():
    out = _chart(5)
    assert len(out[1]) == 1 and torch.equal(out[1].u, out.u[1:2])
    assert len(out[-1]) == 1 and torch.equal(out[-1].v, out.v[4:])
    assert torch.equal(out[1:3].fine_segm, out.fine_segm[1:3])
    mask = torch.tensor([True, False, True, False, True])
    assert torch.equal(out[mask].coarse_segm, out.coarse_segm[mask])
    assert torch.equal(out[torch.tensor([4, 0])].u, out.u[[4, 0]])
    both = DensePoseChartOutput.cat([out[:2], out[2:]])
    assert torch.equal(both.v, out.v)
    parts = out.split([2, 0, 3])
    assert [len(p) for p in parts] == [2, 0, 3]
    assert out.to("cpu").u.device.type == "cpu"
    with pytest.raises(IndexError):
        out[mask[:3]]
    with pytest.raises(ValueError, match="fine_segm"):
        DensePoseChartOutput(out.coarse_segm, out.fine_segm[:2], out.u, out.v)
    # works as an Instances field (indexing and Instances.cat)
    inst = Instances((10, 10), pred_densepose=out)
    assert len(Instances.cat([inst[:2], inst[3:]]).pred_densepose) == 4


def test_inference_attaches_pred_densepose_per_image():
    model = tiny_model().eval()
    g = torch.Generator().manual_seed(0)
    images = [{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8, generator=g)}
              for _ in range(2)]
    with torch.no_grad():
        results = model(images)
    for r in results:
        inst = r["instances"]
        dp = inst.pred_densepose
        assert len(dp) == len(inst)
        assert tuple(dp.coarse_segm.shape[1:]) == (2, 28, 28)
        assert tuple(dp.fine_segm.shape[1:]) == tuple(dp.u.shape[1:]) == (25, 28, 28)


def test_given_boxes_including_empty():
    model = tiny_model().eval()
    images = model.preprocess_image([{"image": torch.zeros(3, 128, 128, dtype=torch.uint8)}] * 2)
    features = model.backbone(images.tensor)
    dets = []
    for boxes in ([[10.0, 10.0, 60.0, 90.0], [0.0, 0.0, 128.0, 128.0]], []):
        inst = Instances((128, 128))
        inst.pred_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        inst.pred_classes = torch.zeros(len(boxes), dtype=torch.long)
        dets.append(inst)
    with torch.no_grad():
        out = model.roi_heads.forward_with_given_boxes(features, dets)
    assert len(out[0].pred_densepose) == 2 and len(out[1].pred_densepose) == 0
    assert tuple(out[1].pred_densepose.u.shape) == (0, 25, 28, 28)


def test_densepose_beside_mask_and_keypoint_heads():
    model = tiny_model(**{"MODEL.MASK_ON": True, "MODEL.KEYPOINT_ON": True,
                          "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0}).eval()
    names = {k.split(".")[1] for k in model.state_dict() if k.startswith("roi_heads.")}
    assert {"box_head", "mask_head", "keypoint_head", "densepose_head",
            "densepose_predictor"} <= names
    with torch.no_grad():
        inst = model([{"image": torch.zeros(3, 128, 128, dtype=torch.uint8)}])[0]["instances"]
    assert len(inst) > 0
    for field in ("pred_masks", "pred_keypoints", "pred_densepose"):
        assert inst.has(field)
    assert not tiny_model(**{"MODEL.DENSEPOSE_ON": False}).roi_heads.densepose_on


def test_select_densepose_proposals_iou_and_annotation():
    d = DensePoseData(torch.ones(1), torch.ones(1), torch.ones(1), torch.zeros(1), torch.zeros(1))
    p = Instances((100, 100))
    gt = [0.0, 0.0, 10.0, 10.0]
    p.proposal_boxes = Boxes(torch.tensor([gt, [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 6.0], gt]))
    p.gt_boxes = Boxes(torch.tensor([gt] * 4))
    p.gt_densepose = DensePoseList([d, d, d, None])
    kept = select_densepose_proposals(p, 0.7)  # IoUs 1.0, 0.8, 0.6, 1.0 (no DensePose)
    assert kept.proposal_boxes.tensor[:, 3].tolist() == [10.0, 8.0]
    q = Instances((100, 100), proposal_boxes=p.proposal_boxes, gt_boxes=p.gt_boxes)
    assert len(select_densepose_proposals(q, 0.7)) == 0  # dataset without DensePose


@pytest.mark.parametrize("name", [
    "Base-DensePose-RCNN-FPN.yaml", "densepose_rcnn_R_50_FPN_s1x.yaml",
    "densepose_rcnn_R_101_FPN_s1x.yaml", "densepose_rcnn_X_101_32x8d_FPN_s1x.yaml",
    "embedded/densepose_rcnn_R_18_GN_FPN.yaml"])
def test_config_files_load_and_build(name):
    cfg = add_densepose_config(get_cfg())
    cfg.merge_from_file(str(CONFIGS / name))
    assert cfg.MODEL.ROI_HEADS.NAME == "DensePoseROIHeads" and cfg.MODEL.DENSEPOSE_ON
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1
    assert cfg.MODEL.WEIGHTS == ("densepose_ext://R_18_GN_FPN_pretrain.pth"
                                 if name.startswith("embedded") else "")
    if name.startswith("embedded"):
        assert cfg.DATASETS.TRAIN == ("densepose_embedded_train",)
        cfg.MODEL.DEVICE = "cpu"
        model = build_model(cfg)
    else:
        assert cfg.DATASETS.TEST == ("densepose_coco_2014_minival",)
        assert cfg.MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM == 512
        if name != "Base-DensePose-RCNN-FPN.yaml":
            assert cfg.SOLVER.MAX_ITER == 130000 and cfg.SOLVER.STEPS == (100000, 120000)
        cfg.MODEL.DEVICE = "meta"  # full-size backbones: build shapes only
        with torch.device("meta"):
            model = build_model(cfg)
    n_fcn = cfg.MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS
    keys = model.state_dict().keys()
    assert f"roi_heads.densepose_head.body_conv_fcn{n_fcn}.weight" in keys
    assert "roi_heads.densepose_predictor.index_uv_lowres.weight" in keys
    if "X_101" in name:
        conv2 = model.backbone.bottom_up.res2[0].conv2
        assert conv2.groups == 32 and conv2.weight.shape[0] == 256
