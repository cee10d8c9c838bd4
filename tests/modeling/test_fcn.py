"""DensePoseFCN: per-pixel and per-instance output shapes, instance extraction, given boxes,
multi-scale / flip merging, losses (targets and overfitting), the single-person crop mode, the
shipped configs, and train_net end to end."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from torch.nn import functional as F

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.config import add_densepose_config
from densepose_ext.data import DensePoseDatasetMapper, PersonCropMapper, person_crop_dataset
from densepose_ext.modeling.fcn import (  # importing registers DensePoseFCN
    DensePoseFCN,
    DensePoseFCNLoss,
    crop_maps_to_boxes,
    flip_back,
    merge_predictions,
    paste_box_frame_masks,
    person_components,
    person_segmentation_target,
    to_log_probs,
)
from densepose_ext.modeling.fcn.head import upsample_maps
from densepose_ext.structures import (
    FINE_PART_HFLIP,
    DensePoseChartOutput,
    DensePoseData,
    DensePoseList,
    DensePoseTransformData,
)
from toys import CONFIGS, REPO, shrunk_cfg

EMBEDDED_CFG = CONFIGS / "embedded" / "densepose_fcn_R_18_GN_FPN.yaml"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One compute thread: on the shared 2-core machine, two threads contending with other
    jobs made the overfitting test about 10x slower (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_cfg(*opts):
    """The embedded FCN config shrunk for tests: 32-channel head, the mini split."""
    return shrunk_cfg(EMBEDDED_CFG, "INPUT.RANDOM_FLIP", "none",
                      "MODEL.DENSEPOSE_FCN.CONVS_DIM", 32, "MODEL.DENSEPOSE_FCN.HEATMAP_SIZE", 28,
                      "DATASETS.TRAIN", ("densepose_embedded_mini",),
                      "DATASETS.TEST", ("densepose_embedded_mini",), *opts)


def tiny_model(*opts, seed=0, **kwargs):
    torch.manual_seed(seed)
    cfg = tiny_cfg(*opts)
    model = DensePoseFCN(cfg, **kwargs) if kwargs else build_model(cfg)
    return model.eval()


def mini_dicts(n=2):
    return DatasetCatalog.get("densepose_embedded_mini")[:n]


def random_maps(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DensePoseChartOutput(
        coarse_segm=torch.randn(n, 2, h, w, generator=g),
        fine_segm=torch.randn(n, 25, h, w, generator=g),
        u=torch.rand(n, 25, h, w, generator=g), v=torch.rand(n, 25, h, w, generator=g),
    )


def mirror_tables():
    """Hand-made flip tables: U -> 1 - U (quantised to the 256 grid), V unchanged."""
    loc = torch.arange(256, dtype=torch.float32) / 255
    u_tab = (1 - loc)[None, None, :].expand(24, 256, 256).clone()
    v_tab = loc[None, :, None].expand(24, 256, 256).clone()
    return DensePoseTransformData.from_tables(u_tab, v_tab)


# ------------------------------------------------------------------------------ shapes
def test_per_pixel_and_per_instance_output_shapes():
    model = tiny_model()
    images = [torch.randint(0, 255, (3, 128, 96), dtype=torch.uint8),
              torch.randint(0, 255, (3, 100, 128), dtype=torch.uint8)]
    batch = model.preprocess_image([{"image": im} for im in images])
    with torch.no_grad():
        maps = model.predict_maps(batch)
        dense = model.dense_outputs([{"image": im} for im in images])
        out = model([{"image": images[0], "height": 256, "width": 192}])
    assert tuple(batch.tensor.shape[-2:]) == (128, 128)  # padded to a multiple of 32
    assert tuple(maps.coarse_segm.shape) == (2, 2, 128, 128)
    assert all(tuple(t.shape) == (2, 25, 128, 128) for t in (maps.fine_segm, maps.u, maps.v))
    assert tuple(dense[0].fine_segm.shape) == (1, 25, 128, 96)
    assert tuple(dense[1].coarse_segm.shape) == (1, 2, 100, 128)
    assert torch.allclose(dense[0].fine_segm.exp().sum(1), torch.ones(1, 128, 96), atol=1e-5)
    inst = out[0]["instances"]
    assert inst.image_size == (256, 192) and len(inst) <= model.max_detections
    dp = inst.pred_densepose
    assert tuple(dp.coarse_segm.shape) == (len(inst), 2, 28, 28)
    assert tuple(dp.fine_segm.shape) == tuple(dp.u.shape) == (len(inst), 25, 28, 28)
    assert inst.pred_classes.tolist() == [0] * len(inst)


# ------------------------------------------------------------------- instance extraction
def test_two_blobs_give_two_boxes_with_their_extents_and_mean_scores():
    prob = torch.zeros(40, 50)
    prob[5:15, 10:30] = 0.9  # rows 5..14, cols 10..29
    prob[20:36, 40:45] = 0.7
    prob[20, 40] = 0.5  # not above threshold: outside the blob
    prob[38, 2] = 0.99  # a single pixel: dropped by min_area
    boxes, scores = person_components(prob, min_area=4)
    assert boxes.tolist() == [[10, 5, 30, 15], [40, 20, 45, 36]]
    assert torch.allclose(scores, torch.tensor([0.9, 0.7]))
    boxes, scores = person_components(prob, min_area=1, max_instances=2)
    assert boxes.tolist() == [[2, 38, 3, 39], [10, 5, 30, 15]] and scores[0] > scores[1]
    diag = torch.zeros(6, 6)
    diag[0, 0] = diag[1, 1] = 1.0  # diagonal neighbours: one component (8-connectivity)
    assert len(person_components(diag)[0]) == 1
    assert person_components(torch.zeros(5, 5))[0].shape == (0, 4)


def test_crop_maps_samples_box_grid_cell_centres():
    h, w = 30, 40
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    plane = (xs + 100 * ys)[None, None]  # value at each pixel centre
    maps = DensePoseChartOutput(coarse_segm=plane.repeat(1, 2, 1, 1),
                                fine_segm=plane.repeat(1, 25, 1, 1),
                                u=plane.repeat(1, 25, 1, 1), v=plane.repeat(1, 25, 1, 1))
    boxes = torch.tensor([[4.0, 6.0, 20.0, 22.0], [10.0, 2.0, 30.0, 12.0]])
    out = crop_maps_to_boxes(maps, boxes, 8)
    assert tuple(out.fine_segm.shape) == (2, 25, 8, 8)
    k = (torch.arange(8) + 0.5) / 8
    for n, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        cx = x0 + k * (x1 - x0)
        cy = y0 + k * (y1 - y0)
        expected = cx[None, :] + 100 * cy[:, None]  # bilinear is exact on a plane
        assert torch.allclose(out.u[n, 3], expected, atol=1e-3)
    assert crop_maps_to_boxes(maps, torch.zeros(0, 4), 8).u.shape == (0, 25, 8, 8)


def test_given_boxes_return_one_instance_per_box_and_postprocess_keeps_the_frame():
    model = tiny_model()
    image = torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)
    given = Instances((128, 128))
    given.pred_boxes = Boxes(torch.tensor([[10.0, 20.0, 60.0, 120.0], [70.0, 0.0, 140.0, 50.0],
                                           [0.0, 0.0, 128.0, 128.0]]))
    given.scores = torch.tensor([0.9, 0.8, 0.7])
    given.pred_classes = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        raw = model.inference([{"image": image}], detected_instances=[given], do_postprocess=False)
        done = model.inference([{"image": image, "height": 256, "width": 256}],
                               detected_instances=[given])
        dense = model.dense_outputs([{"image": image}])[0]
    r = raw[0]
    assert len(r) == 3 and r.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert r.pred_boxes.tensor.tolist()[1] == [70.0, 0.0, 128.0, 50.0]  # clipped to the image
    assert tuple(r.pred_densepose.u.shape) == (3, 25, 28, 28)
    assert torch.allclose(r.pred_densepose.u, crop_maps_to_boxes(dense, r.pred_boxes.tensor, 28).u)
    d = done[0]["instances"]
    assert d.image_size == (256, 256) and len(d) == 3
    assert torch.allclose(d.pred_boxes.tensor, r.pred_boxes.tensor * 2)
    assert torch.equal(d.pred_densepose.fine_segm, r.pred_densepose.fine_segm)  # box frame
    with pytest.raises(ValueError, match="detected_instances"):
        model.inference([{"image": image}], detected_instances=[])


# ----------------------------------------------------------------------- multi-scale / flip
def test_merge_of_one_run_is_the_plain_output_and_runs_average_probabilities():
    plain = tiny_model()
    tta = tiny_model("MODEL.DENSEPOSE_FCN.TEST_AUG.ENABLED", True,
                     "MODEL.DENSEPOSE_FCN.TEST_AUG.MIN_SIZES", (96,),
                     "MODEL.DENSEPOSE_FCN.TEST_AUG.FLIP", False)
    assert tta._runs() == [(96, False)] and plain._runs() == [(None, False)]
    inputs = [{"image": torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)}]
    with torch.no_grad():
        a, b = plain.dense_outputs(inputs)[0], tta.dense_outputs(inputs)[0]
    for name in ("coarse_segm", "fine_segm", "u", "v"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-5)

    r1, r2 = to_log_probs(random_maps(1, 3, 4, seed=1)), to_log_probs(random_maps(1, 3, 4, seed=2))
    merged = merge_predictions([r1, r2])
    expected = ((r1.fine_segm.exp() + r2.fine_segm.exp()) / 2).log()
    assert torch.allclose(merged.fine_segm, expected, atol=1e-6)
    assert torch.allclose(merged.coarse_segm.exp().sum(1), torch.ones(1, 3, 4))
    assert torch.allclose(merged.u, (r1.u + r2.u) / 2)
    assert torch.allclose(merged.v, (r1.v + r2.v) / 2)
    assert merge_predictions([r1]) is r1
    with pytest.raises(ValueError, match="different shapes"):
        merge_predictions([r1, to_log_probs(random_maps(1, 3, 5))])


def test_flip_back_mirrors_relabels_parts_and_maps_uv():
    td = mirror_tables()
    perm = torch.tensor(FINE_PART_HFLIP)
    w = 5
    x = torch.arange(w, dtype=torch.float32)
    q = torch.arange(25, dtype=torch.float32)[:, None, None]
    maps = DensePoseChartOutput(
        coarse_segm=torch.stack([x, -x])[None, :, None, :].clone(),
        fine_segm=(10 * q + x).expand(25, 2, w)[None].clone(),
        u=(q / 50 + 0 * x).expand(25, 2, w)[None].clone(),
        v=(q / 40 + 0 * x).expand(25, 2, w)[None].clone(),
    )
    out = flip_back(maps, td)
    assert torch.equal(out.coarse_segm, maps.coarse_segm.flip(-1))
    for p in range(25):
        src = int(perm[p])  # part p of the image is part perm[p] of the mirrored image
        assert out.fine_segm[0, p, 0].tolist() == (10 * src + x.flip(0)).tolist()
        u_in = torch.tensor(src / 50, dtype=torch.float32)
        if p == 0:
            assert torch.allclose(out.u[0, 0], maps.u[0, 0])  # background keeps its U, V
            assert torch.allclose(out.v[0, 0], maps.v[0, 0])
        else:
            assert torch.allclose(out.u[0, p], 1 - torch.floor(u_in * 255) / 255)
            assert torch.allclose(out.v[0, p], torch.floor(torch.tensor(src / 40) * 255) / 255)
    twice = flip_back(out, td)  # mirroring twice restores the labels and the layout
    assert torch.equal(twice.fine_segm, maps.fine_segm)


def test_flip_testing_runs_with_given_tables_and_is_mirror_consistent():
    td = mirror_tables()
    model = tiny_model("MODEL.DENSEPOSE_FCN.TEST_AUG.ENABLED", True,
                       "MODEL.DENSEPOSE_FCN.TEST_AUG.MIN_SIZES", (64, 128),
                       "MODEL.DENSEPOSE_FCN.TEST_AUG.FLIP", True, transform_data=td)
    assert model._runs() == [(64, False), (64, True), (128, False), (128, True)]
    image = torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)
    with torch.no_grad():
        a = model.dense_outputs([{"image": image}])[0]
        b = model.dense_outputs([{"image": image.flip(-1)}])[0]
        out = model([{"image": image}])[0]["instances"]
    assert tuple(a.fine_segm.shape) == (1, 25, 128, 128)
    # the merged coarse segmentation of a mirrored image is the mirrored merged segmentation
    assert torch.allclose(a.coarse_segm, b.coarse_segm.flip(-1), atol=1e-4)
    assert out.has("pred_densepose")
    with pytest.raises(ValueError, match="flip tables"):
        DensePoseFCN(tiny_cfg(), test_flip=True, transform_data=None)


# ------------------------------------------------------------------------------ losses
def _person(x0, y0, x1, y1, data=None, h=64, w=64):
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32))
    inst.gt_classes = torch.zeros(1, dtype=torch.long)
    inst.gt_densepose = DensePoseList([data])
    return inst


def test_segmentation_target_from_dp_masks_polygons_and_unknown_persons():
    segm = torch.zeros(256, 256, dtype=torch.uint8)
    segm[:, :128] = 3  # left half of the box frame is the person
    data = DensePoseData(torch.tensor([64.0]), torch.tensor([64.0]), torch.tensor([1]),
                         torch.tensor([0.5]), torch.tensor([0.5]), segm)
    annotated = _person(8, 8, 24, 40, data)
    unknown = _person(40, 8, 56, 40, None)
    target = person_segmentation_target(Instances.cat([annotated, unknown]), (64, 96))
    assert target.shape == (64, 96)
    assert (target[8:40, 8:16] == 1).all() and (target[8:40, 16:24] == 0).all()
    assert (target[8:40, 40:56] == -1).all()  # a person without any mask: ignored
    assert (target[:, 64:] == -1).all() and (target[:8, :64] == 0).all()  # padding / background
    poly = _person(8, 8, 24, 40, data)
    poly.gt_masks = PolygonMasks([[np.array([8, 8, 12, 8, 12, 40, 8, 40], dtype=np.float64)]])
    target = person_segmentation_target(poly, (64, 64))
    assert (target[8:40, 8:12] == 1).all() and (target[8:40, 12:24] == 0).all()  # polygons win
    pasted = paste_box_frame_masks(segm[None] > 0, torch.tensor([[0.0, 0.0, 4.0, 2.0]]), 2, 6)
    assert pasted[0].tolist() == [[True, True, False, False, False, False]] * 2


def test_point_losses_follow_the_rcnn_conventions():
    """Points sampled at image positions; I mean, U/V summed, S mean over pixels, weighted."""
    h = w = 64
    maps = random_maps(1, h, w, seed=3)
    xs = torch.tensor([16.0, 128.0, 200.0])
    data = DensePoseData(xs, torch.tensor([32.0, 100.0, 250.0]), torch.tensor([1, 5, 24]),
                         torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.2, 0.4, 0.6]))
    inst = _person(8, 4, 40, 60, data, h, w)
    losses = DensePoseFCNLoss(part_weight=2.0, point_regression_weight=0.5, index_weight=3.0)(
        maps, [inst])
    px = 8 + xs * 32 / 256  # image positions of the points
    py = 4 + torch.tensor([32.0, 100.0, 250.0]) * 56 / 256
    grid = torch.stack([2 * px / w - 1, 2 * py / h - 1], 1)[None, :, None]
    fine = F.grid_sample(maps.fine_segm, grid, align_corners=False)[0, :, :, 0].t()
    u = F.grid_sample(maps.u, grid, align_corners=False)[0, :, :, 0].t()
    u_gt = u[torch.arange(3), data.i]
    expected_i = F.cross_entropy(fine, data.i) * 2.0
    expected_u = F.smooth_l1_loss(u_gt, data.u, reduction="sum") * 0.5
    assert torch.isclose(losses["loss_densepose_I"], expected_i, atol=1e-5)
    assert torch.isclose(losses["loss_densepose_U"], expected_u, atol=1e-5)
    empty = Instances((h, w), gt_boxes=Boxes(torch.zeros(0, 4)))
    zero = DensePoseFCNLoss()(maps, [empty])
    assert zero["loss_densepose_I"] == 0 and zero["loss_densepose_S"] > 0  # all background

    # training samples the stride-4 maps directly: at pixel centres this is exactly the loss
    # of the upsampled per-pixel outputs
    low = random_maps(1, h // 4, w // 4, seed=4)
    y_frame = (torch.tensor([11.5, 30.5]) - 4) * 256 / 56  # rows 11, 30
    x_frame = torch.tensor([20.0, 100.0])  # columns 10, 20
    centres = DensePoseData(x_frame, y_frame, torch.tensor([3, 7]), torch.tensor([0.3, 0.6]),
                            torch.tensor([0.2, 0.9]))
    inst = _person(8, 4, 40, 60, centres, h, w)
    direct = DensePoseFCNLoss()(low, [inst], (h, w))
    upsampled = DensePoseFCNLoss()(upsample_maps(low, (h, w)), [inst])
    for k in direct:
        assert torch.isclose(direct[k], upsampled[k], atol=1e-5), k


def test_losses_decrease_when_overfitting_two_images():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = [DensePoseDatasetMapper(cfg, True)(d) for d in mini_dicts(2)]
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(40):
        losses = model(batch)
        history.append({k: float(v.detach()) for k, v in losses.items()})
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    first, last = history[0], history[-1]
    assert set(first) == {"loss_densepose_I", "loss_densepose_U", "loss_densepose_V",
                          "loss_densepose_S"}
    assert first["loss_densepose_I"] == pytest.approx(math.log(25), rel=0.02)  # uniform start
    assert first["loss_densepose_S"] == pytest.approx(5 * math.log(2), rel=0.02)
    assert last["loss_densepose_I"] < 0.9 * first["loss_densepose_I"]
    assert last["loss_densepose_S"] < 0.6 * first["loss_densepose_S"]
    assert last["loss_densepose_U"] < 0.5 * first["loss_densepose_U"]
    assert last["loss_densepose_V"] < 0.5 * first["loss_densepose_V"]


# ------------------------------------------------------------------- single-person crops
def test_crop_mapper_keeps_one_person_inside_the_crop_with_unchanged_points():
    cfg = tiny_cfg("MODEL.DENSEPOSE_FCN.CROP_SIZE", 96, "MODEL.DENSEPOSE_FCN.CROP_SCALE", 1.2)
    dicts = mini_dicts(3)
    samples = person_crop_dataset(dicts)
    assert len(samples) == sum(len(d["annotations"]) for d in dicts)  # all annotated here
    mapper = PersonCropMapper(cfg, True)
    for sample in samples[:4]:
        ann = sample["annotations"][sample["person_index"]]
        out = mapper(sample)
        assert tuple(out["image"].shape) == (3, 96, 96)
        inst = out["instances"]
        assert len(inst) == 1
        x0, y0, x1, y1 = inst.gt_boxes.tensor[0].tolist()
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
        bw, bh = ann["bbox"][2], ann["bbox"][3]
        side = max(bw, bh) * 1.2
        assert (x1 - x0) == pytest.approx(bw * 96 / side, abs=1e-3)
        assert (y1 - y0) == pytest.approx(bh * 96 / side, abs=1e-3)
        assert max(x1 - x0, y1 - y0) == pytest.approx(96 / 1.2, abs=1e-3)  # centred, 1.2x
        assert (x0 + x1) / 2 == pytest.approx(48, abs=1e-3)
        dp = inst.gt_densepose[0]
        ref = DensePoseData.from_annotation(ann)
        for name in ("x", "y", "i", "u", "v", "segm"):
            assert torch.equal(getattr(dp, name), getattr(ref, name))
    with pytest.raises(ValueError, match="CROP_SCALE"):
        PersonCropMapper(tiny_cfg("MODEL.DENSEPOSE_FCN.CROP_SCALE", 0.8), True)


def test_crop_inference_returns_gt_boxes_in_the_original_image():
    cfg = tiny_cfg("MODEL.DENSEPOSE_FCN.CROP_SIZE", 64, "MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP",
                   True)
    d = mini_dicts(1)[0]
    record = PersonCropMapper(cfg, False)(d)
    assert "annotations" not in record and "image" not in record
    crops = record["person_crops"]
    assert len(crops) == len(d["annotations"])
    for c, ann in zip(crops, d["annotations"]):
        assert tuple(c["image"].shape) == (3, 64, 64) and c["annotation_id"] == ann["id"]
        x, y, w, h = ann["bbox"]
        assert c["source_box"].tolist() == pytest.approx([x, y, x + w, y + h])
        assert max(c["box"][2] - c["box"][0], c["box"][3] - c["box"][1]) == pytest.approx(64 / 1.2)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([record])[0]["instances"]
        direct = model.inference([{"image": crops[0]["image"]}], detected_instances=[
            Instances((64, 64), pred_boxes=Boxes(torch.as_tensor(crops[0]["box"])[None]))],
            do_postprocess=False)[0]
    assert out.image_size == (d["height"], d["width"]) and len(out) == len(crops)
    assert torch.allclose(out.pred_boxes.tensor[0], torch.as_tensor(crops[0]["source_box"]))
    assert torch.allclose(out.pred_densepose.u[0], direct.pred_densepose.u[0], atol=1e-5)
    assert ((out.scores > 0) & (out.scores < 1)).all()
    empty = model([dict(record, person_crops=[])])[0]["instances"]
    assert len(empty) == 0 and empty.pred_densepose.fine_segm.shape == (0, 25, 28, 28)


# ------------------------------------------------------------------- configs, train_net
@pytest.mark.parametrize("name", ["densepose_fcn_R_50_FPN_s1x.yaml",
                                  "embedded/densepose_fcn_R_18_GN_FPN.yaml"])
def test_fcn_config_files_load_and_build(name):
    cfg = add_densepose_config(get_cfg())
    cfg.merge_from_file(str(CONFIGS / name))
    assert cfg.MODEL.META_ARCHITECTURE == "DensePoseFCN"
    # the embedded config starts from the model zoo's backbone; COCO ones name no weights
    assert cfg.MODEL.WEIGHTS == ("densepose_ext://R_18_GN_FPN_pretrain.pth"
                                 if name.startswith("embedded") else "")
    if name.startswith("embedded"):
        rcnn = add_densepose_config(get_cfg())
        rcnn.merge_from_file(str(CONFIGS / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"))
        for key in ("RESNETS", "FPN", "BACKBONE"):
            assert cfg.MODEL[key] == rcnn.MODEL[key]  # same backbone sizing as the R-CNN
        cfg.MODEL.DEVICE = "cpu"
        model = build_model(cfg)
    else:
        assert cfg.SOLVER.MAX_ITER == 130000 and cfg.SOLVER.STEPS == (100000, 120000)
        assert cfg.MODEL.RESNETS.DEPTH == 50
        cfg.MODEL.DEVICE = "meta"
        with torch.device("meta"):
            model = build_model(cfg)
    assert isinstance(model, DensePoseFCN)
    keys = model.state_dict().keys()
    assert "head.fine_segm.weight" in keys and "backbone.bottom_up.res5.0.conv1.weight" in keys


def _train_net(args, config=EMBEDDED_CFG):
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(config), *args],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


SMALL = [
    "DATASETS.TRAIN", '("densepose_embedded_mini",)',
    "DATASETS.TEST", '("densepose_embedded_mini",)',
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0", "MODEL.DENSEPOSE_FCN.MIN_AREA", "16",
]
METRICS = {"gps_ap", "gpsm_ap", "auc10", "auc20", "auc30"}


def test_train_net_trains_and_evaluates_the_fcn(tmp_path):
    out = tmp_path / "run"
    _train_net([*SMALL, "SOLVER.MAX_ITER", "4", "OUTPUT_DIR", str(out)])
    records = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    train = [r for r in records if "loss_densepose_S" in r]
    assert train[-1]["iteration"] == 3
    ev = tmp_path / "eval"
    _train_net(["--eval-only", *SMALL, "MODEL.WEIGHTS", str(out / "model_final.pth"),
                "OUTPUT_DIR", str(ev)])
    results = json.loads((ev / "eval_results.json").read_text())
    assert METRICS <= set(results["densepose_summary"]) and "AP" in results["bbox"]
    assert next(ev.glob("inference/*/densepose_metrics.json")).is_file()


@pytest.mark.slow
def test_train_net_single_person_crop_mode(tmp_path):
    """Crop mode end to end: training on person crops, evaluation with GT boxes (box AP 100)."""
    out = tmp_path / "crop"
    _train_net([*SMALL, "MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP", "True",
                "MODEL.DENSEPOSE_FCN.CROP_SIZE", "128", "SOLVER.MAX_ITER", "2",
                "OUTPUT_DIR", str(out)])
    results = json.loads((out / "eval_results.json").read_text())
    assert METRICS <= set(results["densepose_summary"])
    assert results["bbox"]["AP"] == pytest.approx(100.0)
