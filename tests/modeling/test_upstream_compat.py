"""Compatibility with upstream detectron2 DensePose v0.6: every upstream config key exists with
upstream's default, upstream-style yaml files merge, a checkpoint written in upstream's
state-dict layout (decoder included) loads tensor for tensor and gives the DensePose outputs of
an independent reference, checkpoint mismatches and unsupported options are refused clearly,
and the default training-loss grid follows upstream's formulas."""
import math

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch.nn import functional as F
from torchvision.ops import roi_align

import densepose_ext.modeling  # noqa: F401  (registers the DensePose architectures)
from densepose_ext.config import get_densepose_cfg, setup_densepose_cfg
from densepose_ext.modeling import (
    DensePoseChartLoss,
    DensePoseCheckpointer,
    DensePoseCheckpointError,
    UnsupportedConfigError,
    build_densepose_decoder,
)
from densepose_ext.modeling.point_sampling import (
    frame_to_grid_nodes,
    resample_segm_to_nodes,
    sample_at_grid_nodes,
)
from densepose_ext.structures import DensePoseChartOutput, DensePoseData, DensePoseList
from toys import CONFIGS

R50 = CONFIGS / "densepose_rcnn_R_50_FPN_s1x.yaml"

# Key paths (and defaults) that upstream v0.6's add_densepose_config defines, written down
# from its documentation / config module; each must exist in ours.
UPSTREAM_DEFAULTS = {
    "MODEL.DENSEPOSE_ON": True,
    "MODEL.ROI_DENSEPOSE_HEAD.NAME": "",
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS": 8,
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES": 24,
    "MODEL.ROI_DENSEPOSE_HEAD.DECONV_KERNEL": 4,
    "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM": 512,
    "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_KERNEL": 3,
    "MODEL.ROI_DENSEPOSE_HEAD.UP_SCALE": 2,
    "MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE": 112,
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION": 28,
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_SAMPLING_RATIO": 2,
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS": 2,
    "MODEL.ROI_DENSEPOSE_HEAD.FG_IOU_THRESHOLD": 0.7,
    "MODEL.ROI_DENSEPOSE_HEAD.INDEX_WEIGHTS": 5.0,
    "MODEL.ROI_DENSEPOSE_HEAD.PART_WEIGHTS": 1.0,
    "MODEL.ROI_DENSEPOSE_HEAD.POINT_REGRESSION_WEIGHTS": 0.01,
    "MODEL.ROI_DENSEPOSE_HEAD.COARSE_SEGM_TRAINED_BY_MASKS": False,
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON": True,
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES": 256,
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS": 256,
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NORM": "",
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_COMMON_STRIDE": 4,
    "MODEL.ROI_DENSEPOSE_HEAD.DEEPLAB.NORM": "GN",
    "MODEL.ROI_DENSEPOSE_HEAD.DEEPLAB.NONLOCAL_ON": 0,
    "MODEL.ROI_DENSEPOSE_HEAD.PREDICTOR_NAME": "DensePoseChartWithConfidencePredictor",
    "MODEL.ROI_DENSEPOSE_HEAD.LOSS_NAME": "DensePoseChartWithConfidenceLoss",
    "MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.ENABLED": False,
    "MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.EPSILON": 0.01,
    "MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.TYPE": "iid_iso",
    "MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE.ENABLED": False,
    "MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE.EPSILON": 0.01,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBED_SIZE": 16,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBEDDERS": {},
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBEDDING_DIST_GAUSS_SIGMA": 0.01,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.GEODESIC_DIST_GAUSS_SIGMA": 0.01,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBED_LOSS_WEIGHT": 0.6,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBED_LOSS_NAME": "EmbeddingLoss",
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.FEATURES_LR_FACTOR": 1.0,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBEDDING_LR_FACTOR": 1.0,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.SHAPE_TO_SHAPE_CYCLE_LOSS.ENABLED": False,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.SHAPE_TO_SHAPE_CYCLE_LOSS.WEIGHT": 0.025,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.SHAPE_TO_SHAPE_CYCLE_LOSS.NORM_P": 2,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.SHAPE_TO_SHAPE_CYCLE_LOSS.TEMPERATURE": 0.05,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.SHAPE_TO_SHAPE_CYCLE_LOSS.MAX_NUM_VERTICES": 4936,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.ENABLED": False,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.WEIGHT": 0.0001,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.NORM_P": 2,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.USE_ALL_MESHES_NOT_GT_ONLY": False,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.NUM_PIXELS_TO_SAMPLE": 100,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.PIXEL_SIGMA": 5.0,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.TEMPERATURE_PIXEL_TO_VERTEX": 0.05,
    "MODEL.ROI_DENSEPOSE_HEAD.CSE.PIX_TO_SHAPE_CYCLE_LOSS.TEMPERATURE_VERTEX_TO_PIXEL": 0.05,
    "INPUT.ROTATION_ANGLES": [0],
    "TEST.AUG.ROTATION_ANGLES": (),
    "MODEL.HRNET.STEM_INPLANES": 64,
    "MODEL.HRNET.STAGE2.NUM_MODULES": 1,
    "MODEL.HRNET.STAGE2.NUM_BRANCHES": 2,
    "MODEL.HRNET.STAGE2.BLOCK": "BASIC",
    "MODEL.HRNET.STAGE2.NUM_BLOCKS": [4, 4],
    "MODEL.HRNET.STAGE2.NUM_CHANNELS": [32, 64],
    "MODEL.HRNET.STAGE2.FUSE_METHOD": "SUM",
    "MODEL.HRNET.STAGE3.NUM_MODULES": 4,
    "MODEL.HRNET.STAGE3.NUM_BRANCHES": 3,
    "MODEL.HRNET.STAGE3.BLOCK": "BASIC",
    "MODEL.HRNET.STAGE3.NUM_BLOCKS": [4, 4, 4],
    "MODEL.HRNET.STAGE3.NUM_CHANNELS": [32, 64, 128],
    "MODEL.HRNET.STAGE3.FUSE_METHOD": "SUM",
    "MODEL.HRNET.STAGE4.NUM_MODULES": 3,
    "MODEL.HRNET.STAGE4.NUM_BRANCHES": 4,
    "MODEL.HRNET.STAGE4.BLOCK": "BASIC",
    "MODEL.HRNET.STAGE4.NUM_BLOCKS": [4, 4, 4, 4],
    "MODEL.HRNET.STAGE4.NUM_CHANNELS": [32, 64, 128, 256],
    "MODEL.HRNET.STAGE4.FUSE_METHOD": "SUM",
    "MODEL.HRNET.HRFPN.OUT_CHANNELS": 256,
    "BOOTSTRAP_DATASETS": [],
    "BOOTSTRAP_MODEL.WEIGHTS": "",
    "BOOTSTRAP_MODEL.DEVICE": "cuda",
    "DATASETS.CATEGORY_MAPS": {},
    "DATASETS.WHITELISTED_CATEGORIES": {},
    "DATASETS.CLASS_TO_MESH_NAME_MAPPING": {},
    "DENSEPOSE_EVALUATION.TYPE": "iou",
    "DENSEPOSE_EVALUATION.STORAGE": "none",
    "DENSEPOSE_EVALUATION.MIN_IOU_THRESHOLD": 0.5,
    "DENSEPOSE_EVALUATION.DISTRIBUTED_INFERENCE": True,
    "DENSEPOSE_EVALUATION.EVALUATE_MESH_ALIGNMENT": False,
    "DENSEPOSE_EVALUATION.MESH_ALIGNMENT_MESH_NAMES": [],
}
# our defaults equal upstream's *effective* R_50_FPN_s1x setting (its base yaml sets these)
DOCUMENTED_DIFFERENCES = {
    "MODEL.ROI_DENSEPOSE_HEAD.NAME": "DensePoseV1ConvXHead",
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_TYPE": "ROIAlign",
}


def _lookup(cfg, path):
    node = cfg
    for part in path.split("."):
        assert part in node, f"{path}: {part} missing"
        node = node[part]
    return node


def test_every_upstream_key_exists_with_upstream_default():
    cfg = get_densepose_cfg()
    for path, upstream in UPSTREAM_DEFAULTS.items():
        want = DOCUMENTED_DIFFERENCES.get(path, upstream)
        got = _lookup(cfg, path)
        if isinstance(want, (list, tuple, dict)):
            got = type(want)(got)
        assert got == want, path


LEGACY_YAML = """
_BASE_: "{base}"
MODEL:
  ROI_DENSEPOSE_HEAD:
    NUM_COARSE_SEGM_CHANNELS: 15
    POOLER_RESOLUTION: 14
    HEATMAP_SIZE: 56
    INDEX_WEIGHTS: 2.0
    PART_WEIGHTS: 0.3
    POINT_REGRESSION_WEIGHTS: 0.1
    DECODER_ON: False
SOLVER:
  BASE_LR: 0.002
"""
WC1M_YAML = """
_BASE_: "{base}"
MODEL:
  ROI_DENSEPOSE_HEAD:
    NAME: "DensePoseV1ConvXHead"
    UV_CONFIDENCE:
      ENABLED: True
      TYPE: "iid_iso"
    SEGM_CONFIDENCE:
      ENABLED: True
    POINT_REGRESSION_WEIGHTS: 0.0005
SOLVER:
  CLIP_GRADIENTS:
    ENABLED: True
"""
CSE_YAML = """
_BASE_: "{base}"
MODEL:
  ROI_DENSEPOSE_HEAD:
    PREDICTOR_NAME: "DensePoseEmbeddingPredictor"
    LOSS_NAME: "DensePoseCseLoss"
    CSE:
      EMBED_LOSS_NAME: "SoftEmbeddingLoss"
      EMBEDDERS:
        "smpl_27554":
          TYPE: vertex_feature
          NUM_VERTICES: 27554
          FEATURE_DIM: 256
DATASETS:
  CLASS_TO_MESH_NAME_MAPPING:
    "0": "smpl_27554"
DENSEPOSE_EVALUATION:
  TYPE: cse
  STORAGE: file
INPUT:
  ROTATION_ANGLES: [0, 30]
"""


def _merge(tmp_path, text, *opts):
    path = tmp_path / "upstream_like.yaml"
    path.write_text(text.format(base=CONFIGS / "Base-DensePose-RCNN-FPN.yaml"))
    return setup_densepose_cfg(str(path), ["MODEL.DEVICE", "cpu", *opts])


def test_legacy_style_config_merges_and_builds(tmp_path):
    cfg = _merge(tmp_path, LEGACY_YAML, *_TINY_BACKBONE)
    assert cfg.MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON is False
    heads = build_model(cfg).roi_heads
    assert not hasattr(heads, "decoder")
    assert heads.densepose_predictor.ann_index_lowres.out_channels == 15


def test_confidence_config_merges_then_is_refused_at_build(tmp_path):
    cfg = _merge(tmp_path, WC1M_YAML)
    assert cfg.MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.ENABLED is True
    with pytest.raises(UnsupportedConfigError) as err:
        build_model(cfg)
    msg = str(err.value)
    assert ("MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.ENABLED=True is not supported by "
            "densepose_ext") in msg
    assert "MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE.ENABLED=True" in msg


def test_cse_config_merges_then_is_refused_naming_every_key(tmp_path):
    cfg = _merge(tmp_path, CSE_YAML)
    assert cfg.MODEL.ROI_DENSEPOSE_HEAD.CSE.EMBEDDERS.smpl_27554.NUM_VERTICES == 27554
    with pytest.raises(UnsupportedConfigError) as err:
        build_model(cfg)
    for key in ("PREDICTOR_NAME", "LOSS_NAME", "CSE.EMBEDDERS", "INPUT.ROTATION_ANGLES",
                "DATASETS.CLASS_TO_MESH_NAME_MAPPING", "DENSEPOSE_EVALUATION.TYPE"):
        assert key in str(err.value), key
    assert "STORAGE" not in str(err.value)  # a memory knob of upstream's evaluator: ignored


def test_unknown_head_name_is_refused_clearly():
    cfg = setup_densepose_cfg(str(R50), ["MODEL.DEVICE", "cpu",
                                         "MODEL.ROI_DENSEPOSE_HEAD.NAME", "DensePoseDeepLabHead"])
    with pytest.raises(UnsupportedConfigError, match="NAME='DensePoseDeepLabHead' is not supp"):
        build_model(cfg)
    with pytest.raises(KeyError, match="NAME='DensePoseDeepLabHead' is not supported"):
        densepose_ext.modeling.build_densepose_head(cfg, 16)


def test_shipped_configs_follow_upstream_and_embedded_ones_are_pinned():
    for path in sorted(CONFIGS.glob("*.yaml")) + sorted((CONFIGS / "embedded").glob("*.yaml")):
        cfg = setup_densepose_cfg(str(path))
        head = cfg.MODEL.ROI_DENSEPOSE_HEAD
        got = (cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE, head.POOLER_TYPE, head.DECODER_ON,
               head.LOSS_GRID)
        embedded = path.parent.name == "embedded"
        want = (("ROIAlignV2", "ROIAlignV2", False, "pixel_centers") if embedded
                else ("ROIAlign", "ROIAlign", True, "upstream"))
        assert got == want, path.name


def test_decoder_has_upstream_names_and_size():
    """R-50-FPN shapes, default keys: 16 tensors, ~4.2 M parameters, upstream's names."""
    shapes = {f"p{k}": ShapeSpec(channels=256, stride=2**k) for k in range(2, 6)}
    dec = build_densepose_decoder(get_densepose_cfg(), shapes, ["p2", "p3", "p4", "p5"])
    names = list(dec.state_dict())
    assert names == [
        "p2.0.weight", "p2.0.bias", "p3.0.weight", "p3.0.bias",
        "p4.0.weight", "p4.0.bias", "p4.2.weight", "p4.2.bias",
        "p5.0.weight", "p5.0.bias", "p5.2.weight", "p5.2.bias", "p5.4.weight", "p5.4.bias",
        "predictor.weight", "predictor.bias"]
    assert sum(p.numel() for p in dec.parameters()) == 7 * (256 * 256 * 9 + 256) + 256 * 257
    with pytest.raises(ValueError, match="DECODER_COMMON_STRIDE"):
        build_densepose_decoder(get_densepose_cfg(), shapes, ["p3", "p4"])


# ----------------------------------------------------------------- upstream-layout checkpoint
_TINY_BACKBONE = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 8, "MODEL.RESNETS.RES2_OUT_CHANNELS", 16,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 4, "MODEL.FPN.OUT_CHANNELS", 16,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 32, "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
]
_TINY_DP = dict(fpn=16, dec_dims=8, dec_classes=16, head_dim=8, n_convs=2, n_coarse=2,
                n_fine=25, resolution=7)


def _tiny_cfg(*opts):
    """Our R_50_FPN_s1x config (upstream defaults, decoder on) at test widths."""
    d = _TINY_DP
    return setup_densepose_cfg(str(R50), [
        "MODEL.DEVICE", "cpu", *_TINY_BACKBONE,
        "MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS", d["dec_dims"],
        "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES", d["dec_classes"],
        "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM", d["head_dim"],
        "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS", d["n_convs"],
        "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION", d["resolution"],
        "MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE", 4 * d["resolution"], *opts])


def upstream_densepose_tensors(g, *, fpn, dec_dims, dec_classes, head_dim, n_convs, n_coarse,
                               n_fine, resolution, strides=(4, 8, 16, 32), decoder=True):
    """State-dict entries of upstream v0.6's DensePose branch, named and shaped as upstream
    writes them (ConvTranspose2d weights are (in, out, k, k)); random values."""

    def conv(name, c_out, c_in, k, transposed=False):
        shape = (c_in, c_out, k, k) if transposed else (c_out, c_in, k, k)
        std = math.sqrt(2.0 / (c_in * k * k))
        out[f"{name}.weight"] = torch.randn(shape, generator=g) * std
        out[f"{name}.bias"] = torch.randn(c_out, generator=g) * 0.1

    out = {}
    if decoder:
        for level, stride in zip(range(2, 6), strides):
            n = max(1, int(math.log2(stride) - 2))
            step = 1 if stride == 4 else 2  # an Upsample follows each conv below stride 4
            for k in range(n):
                conv(f"roi_heads.decoder.p{level}.{k * step}", dec_dims,
                     fpn if k == 0 else dec_dims, 3)
        conv("roi_heads.decoder.predictor", dec_classes, dec_dims, 1)
    c_in = dec_classes if decoder else fpn
    for k in range(1, n_convs + 1):
        conv(f"roi_heads.densepose_head.body_conv_fcn{k}", head_dim,
             c_in if k == 1 else head_dim, 3)
    for name, c in (("ann_index_lowres", n_coarse), ("index_uv_lowres", n_fine),
                    ("u_lowres", n_fine), ("v_lowres", n_fine)):
        conv(f"roi_heads.densepose_predictor.{name}", c, head_dim, 4, transposed=True)
    return out


def _upstream_checkpoint(tmp_path, decoder=True, extra=None, drop=()):
    """detectron2's own backbone / RPN / box tensors + the upstream DensePose tensors."""
    torch.manual_seed(7)
    plain = build_model(_tiny_cfg("MODEL.DENSEPOSE_ON", False, "MODEL.ROI_HEADS.NAME",
                                  "StandardROIHeads"))
    state = dict(plain.state_dict())
    state.update(upstream_densepose_tensors(torch.Generator().manual_seed(3), decoder=decoder,
                                            **_TINY_DP))
    state.update(extra or {})
    for k in drop:
        state.pop(k)
    path = tmp_path / "upstream_layout.pth"
    torch.save({"model": state}, path)
    return path, state


def _image():
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8, generator=g)


BOXES = torch.tensor([[8.0, 10.0, 90.0, 120.0], [60.5, 20.25, 150.0, 100.0],
                      [0.0, 0.0, 30.0, 40.0]])


def _reference(state, feats):
    """DensePose outputs for BOXES from the FPN maps, by hand from the checkpoint tensors."""
    t = lambda name: state[name]  # noqa: E731
    merged = 0
    for level in range(2, 6):
        x = feats[f"p{level}"]
        n = max(1, level - 2)
        for k in range(n):
            idx = k if level == 2 else 2 * k
            name = f"roi_heads.decoder.p{level}.{idx}"
            x = F.relu(F.conv2d(x, t(f"{name}.weight"), t(f"{name}.bias"), padding=1))
            if level > 2:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        merged = merged + x
    merged = F.conv2d(merged, t("roi_heads.decoder.predictor.weight"),
                      t("roi_heads.decoder.predictor.bias"))
    # upstream pools with the legacy ROIAlign (no half-pixel shift) at the decoder's stride 4
    x = roi_align(merged, [BOXES], output_size=7, spatial_scale=0.25, sampling_ratio=2,
                  aligned=False)
    for k in range(1, _TINY_DP["n_convs"] + 1):
        x = F.relu(F.conv2d(x, t(f"roi_heads.densepose_head.body_conv_fcn{k}.weight"),
                            t(f"roi_heads.densepose_head.body_conv_fcn{k}.bias"), padding=1))
    out = {}
    for field, name in (("coarse_segm", "ann_index_lowres"), ("fine_segm", "index_uv_lowres"),
                        ("u", "u_lowres"), ("v", "v_lowres")):
        y = F.conv_transpose2d(x, t(f"roi_heads.densepose_predictor.{name}.weight"),
                               t(f"roi_heads.densepose_predictor.{name}.bias"), stride=2, padding=1)
        out[field] = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
    return out


def test_upstream_layout_checkpoint_gives_reference_outputs(tmp_path):
    path, state = _upstream_checkpoint(tmp_path)
    torch.manual_seed(99)  # another init: every tensor must come from the checkpoint
    model = build_model(_tiny_cfg()).eval()
    ckpt = DensePoseCheckpointer(model)
    ckpt.load(str(path))
    assert ckpt.incompatible.missing_keys == [] and ckpt.incompatible.unexpected_keys == []
    own = model.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert not model.roi_heads.box_pooler.level_poolers[0].aligned  # ROIAlign, as upstream
    assert not model.roi_heads.densepose_pooler.level_poolers[0].aligned

    inputs = [{"image": _image()}]
    det = Instances((128, 160))
    det.pred_boxes = Boxes(BOXES.clone())
    det.pred_classes = torch.zeros(len(BOXES), dtype=torch.long)
    with torch.no_grad():
        got = model.inference(inputs, detected_instances=[det], do_postprocess=False)
        feats = model.backbone(model.preprocess_image(inputs).tensor)
        want = _reference(state, feats)
    pred = got[0].pred_densepose
    for field, ref in want.items():
        assert getattr(pred, field).shape == ref.shape == (3, ref.shape[1], 28, 28)
        assert torch.allclose(getattr(pred, field), ref, atol=1e-5, rtol=1e-5), field


def test_checkpoint_without_decoder_is_refused_naming_decoder_on(tmp_path):
    path, _ = _upstream_checkpoint(tmp_path, decoder=False)  # a *_legacy-style checkpoint
    with pytest.raises(DensePoseCheckpointError) as err:
        DensePoseCheckpointer(build_model(_tiny_cfg())).load(str(path))
    msg = str(err.value)
    assert "roi_heads.decoder.p2.0.weight" in msg and "roi_heads.decoder.predictor.bias" in msg
    assert "DECODER_ON" in msg and "ALLOW_PARTIAL_CHECKPOINT" in msg
    # the matching config loads it completely
    cfg = _tiny_cfg("MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON", False)
    ckpt = DensePoseCheckpointer.from_config(cfg, build_model(cfg))
    ckpt.load(str(path))
    assert ckpt.incompatible.missing_keys == [] and ckpt.incompatible.unexpected_keys == []


def test_dropped_densepose_tensor_is_refused_unless_allowed(tmp_path):
    # e.g. an upstream confidence model's extra predictor output
    extra = {"roi_heads.densepose_predictor.sigma_2_lowres.weight": torch.zeros(8, 25, 4, 4)}
    path, state = _upstream_checkpoint(tmp_path, extra=extra)
    with pytest.raises(DensePoseCheckpointError, match="sigma_2_lowres.weight.*PREDICTOR_NAME"):
        DensePoseCheckpointer.from_config(_tiny_cfg(), build_model(_tiny_cfg())).load(str(path))
    cfg = _tiny_cfg("MODEL.ROI_DENSEPOSE_HEAD.ALLOW_PARTIAL_CHECKPOINT", True)
    model = build_model(cfg)
    ckpt = DensePoseCheckpointer.from_config(cfg, model)
    ckpt.load(str(path))
    assert ckpt.densepose_unexpected_keys == list(extra)
    key = "roi_heads.densepose_predictor.u_lowres.weight"
    assert torch.equal(model.state_dict()[key], state[key])


def test_missing_or_reshaped_densepose_tensors_are_refused(tmp_path):
    path, _ = _upstream_checkpoint(tmp_path, drop=["roi_heads.decoder.p4.2.bias"])
    with pytest.raises(DensePoseCheckpointError,
                       match=r"missing .*\(1\): roi_heads.decoder.p4.2.bias"):
        DensePoseCheckpointer(build_model(_tiny_cfg())).load(str(path))
    path, _ = _upstream_checkpoint(tmp_path)
    wide = _tiny_cfg("MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM", 12)
    with pytest.raises(DensePoseCheckpointError, match="of another shape.*CONV_HEAD_DIM"):
        DensePoseCheckpointer(build_model(wide)).load(str(path))


def test_checkpoint_without_densepose_tensors_loads_silently(tmp_path):
    torch.manual_seed(7)
    plain = build_model(_tiny_cfg("MODEL.DENSEPOSE_ON", False, "MODEL.ROI_HEADS.NAME",
                                  "StandardROIHeads"))
    backbone = {k: v for k, v in plain.state_dict().items() if k.startswith("backbone.")}
    torch.save({"model": backbone}, tmp_path / "backbone.pth")
    model = build_model(_tiny_cfg())
    ckpt = DensePoseCheckpointer(model)
    ckpt.load(str(tmp_path / "backbone.pth"))  # no error: the DensePose branch keeps its init
    assert "roi_heads.decoder.p2.0.weight" in ckpt.densepose_missing_keys


# ----------------------------------------------------------------- training-loss grid
def test_default_loss_grid_is_upstream():
    assert get_densepose_cfg().MODEL.ROI_DENSEPOSE_HEAD.LOSS_GRID == "upstream"
    assert DensePoseChartLoss(get_densepose_cfg()).grid == "upstream"


def test_upstream_point_sampling_known_answer():
    """Box (10, 20)-(50, 60), S = 4: node k at 10 + 10k (x), 20 + 10k (y)."""
    pred = (torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) ** 1.5)
    p = pred[0, 0]
    box = torch.tensor([[10.0, 20.0, 50.0, 60.0]])
    gt_box = torch.tensor([[0.0, 0.0, 80.0, 80.0]])
    to_frame = 256 / 80  # image point (x, y) is frame point (x, y) * 256 / 80
    img = torch.tensor([[27.0, 43.0], [48.0, 20.0], [10.0, 59.0], [50.0, 30.0], [9.9, 30.0]])
    gx, gy, inside = frame_to_grid_nodes(img[None, :, 0] * to_frame, img[None, :, 1] * to_frame,
                                         gt_box, box, 4)
    assert torch.allclose(gx[0], torch.tensor([1.7, 3.8, 0.0, 4.0, -0.01]), atol=1e-5)
    assert inside[0].tolist() == [True, True, True, False, False]  # [x0, x1) x [y0, y1)
    got = sample_at_grid_nodes(pred, gx, gy)[0, 0, :3]
    want = torch.stack([
        # (27, 43): nodes x 1|2 with weight 0.7 on 2, y 2|3 with weight 0.3 on 3
        p[2, 1] * 0.3 * 0.7 + p[2, 2] * 0.7 * 0.7 + p[3, 1] * 0.3 * 0.3 + p[3, 2] * 0.7 * 0.3,
        p[0, 3],  # (48, 20): past the last node -> its value
        p[3, 0],  # (10, 59): y node 3.9 -> the last row's value
    ])
    assert torch.allclose(got, want, atol=1e-4)


def test_upstream_segm_resampling_known_answer():
    """GT box 85 px wide: frame index = 3 x image offset (align_corners); nodes read nearest."""
    segm = torch.zeros(1, 256, 256, dtype=torch.uint8)
    segm[:, :, :128] = 1
    segm[:, :, 128:] = 2
    segm[:, 200:, :] = 14
    gt_box = torch.tensor([[0.0, 0.0, 85.0, 85.0]])
    box = torch.tensor([[10.0, 40.0, 130.0, 100.0]])  # x nodes 10, 40, 70, 100; y 40 .. 85
    out = resample_segm_to_nodes(segm, gt_box, box, 4)
    # x frame 30, 120, 210, 300 (outside -> 0); y frame 120, 165, 210, 255
    assert out[0].tolist() == [[1, 1, 2, 0], [1, 1, 2, 0], [14, 14, 14, 0], [14, 14, 14, 0]]


def test_upstream_losses_equal_hand_formula():
    """Default (upstream) grid: I, U, V and S losses of crafted outputs, by hand."""
    s = 4
    g = torch.Generator().manual_seed(0)
    out = DensePoseChartOutput(torch.randn(1, 2, s, s, generator=g),
                               torch.randn(1, 25, s, s, generator=g),
                               torch.randn(1, 25, s, s, generator=g),
                               torch.randn(1, 25, s, s, generator=g))
    # proposal (0, 0)-(40, 40) (nodes every 10 px), GT box (0, 0)-(80, 80)
    img = torch.tensor([[27.0, 13.0], [5.0, 38.0], [60.0, 10.0]])  # the last is outside
    parts = torch.tensor([3, 7, 24])
    u, v = torch.tensor([0.2, 0.9, 0.5]), torch.tensor([0.4, 0.1, 0.5])
    segm = torch.zeros(256, 256, dtype=torch.uint8)
    segm[:, :64] = 4  # frame columns < 64 (image x < 20) are body
    data = DensePoseData(img[:, 0] * 256 / 80, img[:, 1] * 256 / 80, parts, u, v, segm=segm)
    prop = Instances((100, 100))
    prop.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 40.0, 40.0]]))
    prop.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 80.0, 80.0]]))
    prop.gt_densepose = DensePoseList([data])
    cfg = get_densepose_cfg()
    loss = DensePoseChartLoss(cfg)(out, [prop])

    def bilinear(m, x, y):  # node coordinates
        x0, y0 = int(x), int(y)
        x1, y1 = min(x0 + 1, s - 1), min(y0 + 1, s - 1)
        wx, wy = x - x0, y - y0
        return (m[..., y0, x0] * (1 - wx) * (1 - wy) + m[..., y0, x1] * wx * (1 - wy)
                + m[..., y1, x0] * (1 - wx) * wy + m[..., y1, x1] * wx * wy)

    nodes = [(2.7, 1.3), (0.5, 3.8)]  # the two points inside, in node units
    fine = torch.stack([bilinear(out.fine_segm[0], x, y) for x, y in nodes])
    u_est = torch.stack([bilinear(out.u[0, parts[k]], x, y) for k, (x, y) in enumerate(nodes)])
    v_est = torch.stack([bilinear(out.v[0, parts[k]], x, y) for k, (x, y) in enumerate(nodes)])
    w = cfg.MODEL.ROI_DENSEPOSE_HEAD
    assert loss["loss_densepose_I"].item() == pytest.approx(
        F.cross_entropy(fine, parts[:2]).item() * w.PART_WEIGHTS, rel=1e-5)
    assert loss["loss_densepose_U"].item() == pytest.approx(
        F.smooth_l1_loss(u_est, u[:2], reduction="sum").item() * w.POINT_REGRESSION_WEIGHTS,
        rel=1e-5)
    assert loss["loss_densepose_V"].item() == pytest.approx(
        F.smooth_l1_loss(v_est, v[:2], reduction="sum").item() * w.POINT_REGRESSION_WEIGHTS,
        rel=1e-5)
    # S: node x = 0, 10, 20, 30 -> frame 0, 31.9, 63.75, 95.6 -> nearest 0, 32, 64, 96: body at
    # the first two columns only (frame columns < 64)
    labels = torch.tensor([[1, 1, 0, 0]] * s)[None]
    assert loss["loss_densepose_S"].item() == pytest.approx(
        F.cross_entropy(out.coarse_segm, labels).item() * w.INDEX_WEIGHTS, rel=1e-5)
