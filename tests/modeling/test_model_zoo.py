"""The embedded model zoo: densepose_ext:// names, the shipped pretrained network, clear errors."""
import json

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.config import setup_densepose_cfg
from synthesis.embedded_datasets import EMBEDDED_SPLITS
from densepose_ext.model_zoo import (
    MODEL_ZOO,
    PREFIX,
    ModelZooError,
    export_pretrained,
    get_local_path,
    model_zoo_dir,
)
from densepose_ext.modeling.checkpoint import DensePoseCheckpointer
from toys import REPO

ENTRY = MODEL_ZOO["R_18_GN_FPN_pretrain.pth"]
ZOO_FILE = model_zoo_dir() / ENTRY.file_name
DP_CONFIG = REPO / "configs" / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
EMBEDDED = sorted((REPO / "configs" / "embedded").glob("*.yaml"))


def _model(config=DP_CONFIG, *opts):
    cfg = setup_densepose_cfg(str(config), ["MODEL.WEIGHTS", "", *opts])
    torch.manual_seed(0)
    return cfg, build_model(cfg)


@pytest.mark.parametrize("config", [c for c in EMBEDDED if "pretrain" not in c.name],
                         ids=lambda c: c.name)
def test_embedded_configs_start_from_the_zoo_backbone(config):
    cfg = setup_densepose_cfg(str(config))
    assert cfg.MODEL.WEIGHTS == PREFIX + ENTRY.file_name


def test_pretrain_config_trains_from_scratch_without_densepose_labels():
    cfg = setup_densepose_cfg(str(REPO / ENTRY.config))
    assert cfg.MODEL.WEIGHTS == "" and not cfg.MODEL.DENSEPOSE_ON
    assert cfg.MODEL.MASK_ON and cfg.MODEL.KEYPOINT_ON
    assert cfg.DATASETS.TRAIN == ("coco_person_embedded_pretrain",)


def test_pretraining_split_is_disjoint_and_has_no_densepose_labels():
    """The pretraining set has a seed of its own (so other poses, people, cameras and images
    than every DensePose split) and its loader drops every DensePose label."""
    split = EMBEDDED_SPLITS["coco_person_embedded_pretrain"]
    others = [s for name, s in EMBEDDED_SPLITS.items() if name != "coco_person_embedded_pretrain"]
    assert split.seed not in {s.seed for s in others}
    assert split.subdir not in {s.subdir for s in others}
    assert not split.densepose_labels and all(s.densepose_labels for s in others)
    from densepose_ext.data import without_densepose

    record = DatasetCatalog.get("densepose_embedded_mini")[0]
    stripped = without_densepose(record)
    assert "dense_file" in record and "dense_file" not in stripped
    for ann, orig in zip(stripped["annotations"], record["annotations"]):
        assert not [k for k in ann if k.startswith("dp_")]
        assert ann["bbox"] == orig["bbox"] and ann["keypoints"] == orig["keypoints"]
        assert ann["segmentation"] == orig["segmentation"]


@pytest.mark.skipif(not ZOO_FILE.is_file(), reason="model-zoo file not built")
def test_shipped_file_is_small_and_loads_every_backbone_rpn_and_box_tensor():
    assert ZOO_FILE.stat().st_size <= 25_000_000
    cfg, model = _model()
    checkpointer = DensePoseCheckpointer(model)
    checkpointer.load(PREFIX + ENTRY.file_name)
    shipped = torch.load(ZOO_FILE, map_location="cpu")["model"]
    state = model.state_dict()
    for key, value in shipped.items():
        assert value.dtype in (torch.float16, torch.int64)
        assert torch.equal(state[key], value.to(state[key].dtype)), key
    kept = [k for k in state if k.startswith(tuple(ENTRY.keep_prefixes))]
    assert sorted(kept) == sorted(shipped)
    assert not [k for k in checkpointer.incompatible.missing_keys if k in kept]
    meta = json.loads(ZOO_FILE.with_suffix(".json").read_text())
    assert meta["config"] == ENTRY.config and meta["metrics"]["bbox_AP"] > 0


@pytest.mark.skipif(not ZOO_FILE.is_file(), reason="model-zoo file not built")
def test_shipped_backbone_is_trained_not_random():
    """Pretrained backbone + RPN + box head find the persons of the mini split (the DensePose
    head is untrained): COCO box AP far above the ~0 of a random network."""
    from densepose_ext.engine import Trainer

    cfg, model = _model(DP_CONFIG, "DATASETS.TEST", ("densepose_embedded_mini",))
    cfg.MODEL.DENSEPOSE_ON = False  # box AP only (fast)
    DensePoseCheckpointer(model).load(PREFIX + ENTRY.file_name)
    model.eval()
    results = Trainer.test(cfg, model)
    assert results["bbox"]["AP"] > 30.0


def test_missing_zoo_file_names_the_rebuild_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEPOSE_EXT_MODEL_ZOO", str(tmp_path))
    with pytest.raises(ModelZooError, match="python tools/pretrain_model_zoo.py"):
        get_local_path(PREFIX + ENTRY.file_name)
    _, model = _model()
    with pytest.raises(ModelZooError, match=r"R_18_GN_FPN_pretrain\.pth.*pretrain_model_zoo"):
        DensePoseCheckpointer(model).load(PREFIX + ENTRY.file_name)
    with pytest.raises(ModelZooError, match="not a model-zoo file"):
        get_local_path(PREFIX + "nope.pth")


def test_corrupt_zoo_file_names_the_rebuild_command(tmp_path, monkeypatch):
    _, model = _model()
    good = tmp_path / "good.pth"
    export_pretrained({"model": model.state_dict()}, good, ENTRY)
    data = good.read_bytes()
    (tmp_path / ENTRY.file_name).write_bytes(data[: len(data) // 2])  # truncated download
    monkeypatch.setenv("DENSEPOSE_EXT_MODEL_ZOO", str(tmp_path))
    with pytest.raises(ModelZooError, match="unreadable.*python tools/pretrain_model_zoo.py"):
        DensePoseCheckpointer(model).load(PREFIX + ENTRY.file_name)


def test_export_keeps_backbone_rpn_box_head_in_fp16_and_round_trips(tmp_path, monkeypatch):
    _, model = _model()
    out = tmp_path / ENTRY.file_name
    counts = export_pretrained({"model": model.state_dict()}, out, ENTRY, {"iterations": 7})
    assert all(n > 0 for n in counts.values())
    saved = torch.load(out, map_location="cpu")
    assert saved["meta"] == {"iterations": 7}
    assert not [k for k in saved["model"] if "densepose" in k]
    assert {v.dtype for v in saved["model"].values()} <= {torch.float16, torch.int64}
    # loads into a fresh model: those tensors equal (to fp16 precision), DensePose untouched
    monkeypatch.setenv("DENSEPOSE_EXT_MODEL_ZOO", str(tmp_path))
    torch.manual_seed(1)
    _, fresh = _model()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    DensePoseCheckpointer(fresh).load(PREFIX + ENTRY.file_name)
    after = fresh.state_dict()
    for key, value in model.state_dict().items():
        if key in saved["model"]:
            torch.testing.assert_close(after[key], value, atol=1e-2, rtol=1e-3)
        elif "densepose" in key:
            assert torch.equal(after[key], before[key])
    with pytest.raises(KeyError, match="no tensors under"):
        export_pretrained({"model": {"x": torch.zeros(1)}}, tmp_path / "bad.pth", ENTRY)
    assert not (tmp_path / "bad.pth").exists()


def test_pretrain_tool_is_documented():
    text = (REPO / "MODEL_ZOO.md").read_text()
    assert ENTRY.rebuild_command in text and ENTRY.file_name in text
