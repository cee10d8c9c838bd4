"""Checkpoints: save -> load gives identical outputs; upstream detectron2 and Caffe2 DensePose
layouts load with no missing or unexpected DensePose keys; mismatches are refused (or, when
allowed, reported)."""
import pickle

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from densepose_ext.modeling import (
    DensePoseCheckpointer,
    DensePoseCheckpointError,
    convert_densepose_keys,
)
from toys import tiny_model

_C2_PRED = {"ann_index_lowres": "AnnIndex_lowres", "index_uv_lowres": "Index_UV_lowres",
            "u_lowres": "U_lowres", "v_lowres": "V_lowres"}


def _c2_name(key: str) -> str:
    """Our DensePose key -> Caffe2 Detectron blob name (e.g. body_conv_fcn1_w)."""
    module, param = key.split(".")[-2:]
    return f"{_C2_PRED.get(module, module)}_{param[0]}"


def _inference(model):
    g = torch.Generator().manual_seed(3)
    image = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        return model.eval()([{"image": image}])[0]["instances"]


def _dp_keys(model):
    return [k for k in model.state_dict() if ".densepose_" in k]


def test_save_load_identical_outputs(tmp_path):
    model = tiny_model(seed=0, **{"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0})
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    other = tiny_model(seed=1, **{"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0})
    DensePoseCheckpointer(other).load(str(tmp_path / "model_final.pth"))
    a, b = _inference(model), _inference(other)
    assert len(a) > 0 and torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    for f in ("coarse_segm", "fine_segm", "u", "v"):
        assert torch.equal(getattr(a.pred_densepose, f), getattr(b.pred_densepose, f))


def test_upstream_detectron2_layout_loads(tmp_path):
    src = tiny_model(seed=0)
    state = {k: v.clone() for k, v in src.state_dict().items()}
    # upstream DensePose (detectron2) names: identical to ours, so only the DDP prefix differs
    assert "roi_heads.densepose_head.body_conv_fcn1.weight" in state
    assert "roi_heads.densepose_predictor.ann_index_lowres.weight" in state
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, tmp_path / "zoo.pth")
    dst = tiny_model(seed=1)
    ckpt = DensePoseCheckpointer(dst)
    ckpt.load(str(tmp_path / "zoo.pth"))
    assert ckpt.densepose_missing_keys == [] and ckpt.densepose_unexpected_keys == []
    assert ckpt.incompatible.missing_keys == [] and ckpt.incompatible.unexpected_keys == []
    for k in _dp_keys(src):
        assert torch.equal(dst.state_dict()[k], state[k]), k


def test_caffe2_densepose_blobs_load(tmp_path):
    src = tiny_model(seed=0)
    blobs = {_c2_name(k): v.numpy() for k, v in src.state_dict().items() if ".densepose_" in k}
    assert "body_conv_fcn2_w" in blobs and "Index_UV_lowres_b" in blobs
    with open(tmp_path / "c2.pkl", "wb") as f:  # a Caffe2 Detectron blob file
        pickle.dump({"blobs": blobs}, f)
    dst = tiny_model(seed=1)
    ckpt = DensePoseCheckpointer(dst)
    ckpt.load(str(tmp_path / "c2.pkl"))
    assert ckpt.densepose_missing_keys == [] and ckpt.densepose_unexpected_keys == []
    assert ckpt.renamed_keys["AnnIndex_lowres_w"] == (
        "roi_heads.densepose_predictor.ann_index_lowres.weight")
    for k in _dp_keys(src):
        assert torch.equal(dst.state_dict()[k], src.state_dict()[k]), k


def test_mismatch_is_refused_or_reported(tmp_path):
    state = dict(tiny_model(seed=0).state_dict())
    state.pop("roi_heads.densepose_predictor.u_lowres.bias")
    state["roi_heads.densepose_head.body_conv_fcn9.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "partial.pth")
    with pytest.raises(DensePoseCheckpointError, match="u_lowres.bias.*body_conv_fcn9.weight"):
        DensePoseCheckpointer(tiny_model(seed=1)).load(str(tmp_path / "partial.pth"))
    ckpt = DensePoseCheckpointer(tiny_model(seed=1), allow_partial=True)
    ckpt.load(str(tmp_path / "partial.pth"))
    assert ckpt.densepose_missing_keys == ["roi_heads.densepose_predictor.u_lowres.bias"]
    assert ckpt.densepose_unexpected_keys == ["roi_heads.densepose_head.body_conv_fcn9.weight"]


def test_convert_densepose_keys():
    new, renamed = convert_densepose_keys(
        {"body_conv_fcn8_b": 1, "V_lowres_w": 2, "module.backbone.x": 3, "other": 4})
    assert list(new) == ["roi_heads.densepose_head.body_conv_fcn8.bias",
                         "roi_heads.densepose_predictor.v_lowres.weight", "backbone.x", "other"]
    assert set(renamed) == {"body_conv_fcn8_b", "V_lowres_w", "module.backbone.x"}
