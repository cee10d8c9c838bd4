"""DensePose-COCO loading: valid data gives the right dicts; each bad record one clear error
(on the toy dataset of :func:`toys.write_toy_dataset`)."""
import json
from pathlib import Path

import numpy as np
import pytest
from detectron2.structures import BoxMode

from densepose_ext.data import DensePoseDatasetError, load_densepose_coco_json
from synthesis.embedded_datasets import EMBEDDED_SPLITS
from toys import TOY_H, TOY_W, coarse_masks, write_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_dp")
    return write_toy_dataset(root)


def test_load_valid(toy):
    dicts = load_densepose_coco_json(toy, toy.parent / "images")
    assert [d["image_id"] for d in dicts] == [1, 2]
    d = dicts[0]
    assert Path(d["file_name"]).is_absolute() and Path(d["file_name"]).exists()
    assert (d["height"], d["width"]) == (TOY_H, TOY_W)
    assert d["dense_file"].endswith("dense/000001.npz")
    assert len(d["annotations"]) == 2 and len(dicts[1]["annotations"]) == 1
    a, b = d["annotations"]
    assert a["bbox"] == [10.0, 8.0, 30.0, 40.0] and a["bbox_mode"] == BoxMode.XYWH_ABS
    assert a["category_id"] == 0 and a["iscrowd"] == 0 and a["id"] == 11
    assert len(a["keypoints"]) == 51 and len(a["segmentation"]) == 1
    raw = json.loads(toy.read_text())["annotations"][0]["keypoints"]
    assert a["keypoints"][3:6] == [raw[3] + 0.5, raw[4] + 0.5, raw[5]]  # detectron2 convention
    assert len(a["dp_x"]) == 24 and len(a["dp_masks"]) == 14
    assert "dp_x" not in b  # person without DensePose is kept, just without dp keys


def test_load_logs_counts(toy, caplog):
    with caplog.at_level("INFO"):
        load_densepose_coco_json(toy, toy.parent / "images")
    assert "3 persons (2 with DensePose, 1 without)" in caplog.text


def _mutate(path: Path, fn) -> Path:
    data = json.loads(path.read_text())
    fn(data)
    out = path.parent / "bad.json"
    out.write_text(json.dumps(data))
    return out


def _ann(data, ann_id):
    return next(a for a in data["annotations"] if a["id"] == ann_id)


def _set(ann_id, key, value):
    return lambda d: _ann(d, ann_id).__setitem__(key, value)


BAD_RECORDS = {
    "missing bbox": (lambda d: _ann(d, 11).pop("bbox"), 11, "missing required key(s) bbox"),
    "zero width": (_set(11, "bbox", [10, 8, 0, 40]), 11, "non-positive size"),
    "box outside": (_set(21, "bbox", [60, 4, 40, 56]), 21, "outside the 80x64 image"),
    "keypoints length": (_set(12, "keypoints", [0] * 50), 12, "keypoints must have 51"),
    "keypoint visibility": (
        lambda d: _ann(d, 12)["keypoints"].__setitem__(5, 3), 12, "visibility must be 0, 1 or 2"),
    "dp lengths": (lambda d: _ann(d, 21)["dp_U"].pop(), 21, "different lengths"),
    "dp_x range": (lambda d: _ann(d, 11)["dp_x"].__setitem__(0, 300.0), 11, "dp_x outside"),
    "dp_y range": (lambda d: _ann(d, 11)["dp_y"].__setitem__(0, -1.0), 11, "dp_y outside"),
    "dp_I fraction": (
        lambda d: _ann(d, 11)["dp_I"].__setitem__(3, 2.5), 11, "dp_I must be integers"),
    "dp_I range": (lambda d: _ann(d, 11)["dp_I"].__setitem__(3, 25.0), 11, "dp_I must be integers"),
    "dp_U range": (lambda d: _ann(d, 21)["dp_U"].__setitem__(0, 1.5), 21, "dp_U outside [0, 1]"),
    "dp_V range": (lambda d: _ann(d, 21)["dp_V"].__setitem__(0, -0.2), 21, "dp_V outside [0, 1]"),
    "dp_masks count": (lambda d: _ann(d, 11)["dp_masks"].pop(), 11, "list of 14 entries"),
    "dp_masks size": (
        lambda d: _ann(d, 11)["dp_masks"][1].__setitem__("size", [128, 128]), 11,
        "must be 256x256"),
    "dp incomplete": (lambda d: _ann(d, 11).pop("dp_masks"), 11, "missing dp_masks"),
    "unknown image": (_set(21, "image_id", 99), 21, "image_id 99 is not in 'images'"),
    "not a person": (_set(12, "category_id", 3), 12, "not the person category"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_names_file_and_annotation(toy, case):
    fn, ann_id, expected = BAD_RECORDS[case]
    bad = _mutate(toy, fn)
    with pytest.raises(DensePoseDatasetError) as err:
        load_densepose_coco_json(bad, toy.parent / "images")
    msg = str(err.value)
    assert str(bad) in msg and f"annotation id={ann_id}" in msg and expected in msg, msg
    assert isinstance(err.value, ValueError)


def test_malformed_json_gives_line(toy):
    bad = toy.parent / "broken.json"
    bad.write_text('{"images": [],\n "annotations": [\n {"id": 1,, }]}')
    with pytest.raises(DensePoseDatasetError, match=r"broken.json: malformed json at line 3"):
        load_densepose_coco_json(bad, toy.parent / "images")


def test_missing_image_file_named(toy):
    bad = _mutate(toy, lambda d: d["images"][1].__setitem__("file_name", "nope.png"))
    expected = r"image id=2: image file .*nope.png does not exist"
    with pytest.raises(DensePoseDatasetError, match=expected):
        load_densepose_coco_json(bad, toy.parent / "images")
    # the check can be deferred to the mapper, which names the file too (see test_mapper)
    dicts = load_densepose_coco_json(bad, toy.parent / "images", check_images=False)
    assert dicts[1]["file_name"].endswith("nope.png")


def test_missing_keypoints_on_some_annotations(toy):
    bad = _mutate(toy, lambda d: _ann(d, 21).pop("keypoints"))
    with pytest.raises(DensePoseDatasetError, match=r"annotation id=21 .*missing 'keypoints'"):
        load_densepose_coco_json(bad, toy.parent / "images")


def test_registered_names_and_metadata():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)

    names = set(DatasetCatalog.list())
    assert set(EMBEDDED_SPLITS) <= names
    meta = MetadataCatalog.get("densepose_embedded_mini")
    assert meta.thing_classes == ["person"] and meta.evaluator_type == "densepose"
    assert len(meta.keypoint_names) == 17 and meta.json_file.endswith("mini/annotations.json")
    assert EMBEDDED_SPLITS["densepose_embedded_mini"].num_images == 16


def test_real_coco_registered_only_when_present(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from densepose_ext.data import register_densepose_coco

    assert not register_densepose_coco(
        "densepose_test_absent", "coco/val2014", "coco/annotations/x.json", tmp_path)
    assert "densepose_test_absent" not in DatasetCatalog.list()
    write_toy_dataset(tmp_path / "coco" / "toy")
    name = "densepose_test_present"
    assert register_densepose_coco(name, "coco/toy/images", "coco/toy/annotations.json", tmp_path)
    try:
        assert len(DatasetCatalog.get(name)) == 2
        assert MetadataCatalog.get(name).densepose_uv_symmetry_file.endswith(
            "densepose_data/UV_symmetry_transforms.mat")
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_coco_unlabeled_images_register_from_their_image_info_file(tmp_path):
    """COCO's unlabeled2017 (an image-info json: images, no "annotations" key) registers as
    ``coco_2017_unlabeled``: every image, checked, with no annotations; a wrong image size is
    one error naming the json and the image."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from densepose_ext.data import COCO_IMAGE_SPLITS, register_coco_splits

    toy_json = write_toy_dataset(tmp_path / "toy")
    image_dir, json_rel = COCO_IMAGE_SPLITS["coco_2017_unlabeled"]
    (tmp_path / image_dir).parent.mkdir(parents=True)
    (tmp_path / "toy" / "images").rename(tmp_path / image_dir)
    images = json.loads(toy_json.read_text())["images"]
    info = tmp_path / json_rel
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"info": {}, "images": images}))
    name = "coco_2017_unlabeled"
    assert name in register_coco_splits(tmp_path)
    try:
        dicts = DatasetCatalog.get(name)
        assert [d["image_id"] for d in dicts] == [img["id"] for img in images]
        assert all("annotations" not in d and Path(d["file_name"]).is_file() for d in dicts)
        assert (dicts[0]["height"], dicts[0]["width"]) == (TOY_H, TOY_W)
        assert MetadataCatalog.get(name).thing_classes == ["person"]
        images[1]["height"] += 1
        info.write_text(json.dumps({"images": images}))
        with pytest.raises(DensePoseDatasetError, match=r"image_info_unlabeled2017\.json.*"
                                                        rf"id={images[1]['id']}"):
            DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_embedded_split_loads_existing_files(tmp_path):
    """An embedded split whose files exist is loaded as is (no rendering)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from synthesis.embedded_datasets import EmbeddedSplit, register_embedded_split

    write_toy_dataset(tmp_path / "densepose_embedded" / "toy")
    name = "densepose_test_embedded_toy"
    register_embedded_split(name, EmbeddedSplit("toy", num_images=2, seed=0), tmp_path)
    try:
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == 2 and all("dense_file" in d for d in dicts)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_dp_masks_decode_with_later_part_winning():
    from densepose_ext.structures import decode_dp_masks

    frame = np.zeros((256, 256), np.uint8)
    frame[10:20, 10:20] = 1
    masks = coarse_masks(frame)
    overlap = np.zeros((256, 256), np.uint8)
    overlap[15:30, 15:30] = 1
    masks[13] = coarse_masks(overlap)[0]  # head mask overlapping the torso
    segm = decode_dp_masks(masks)
    assert segm[12, 12] == 1 and segm[16, 16] == 14 and segm[25, 25] == 14 and segm[0, 0] == 0


def test_embedded_split_renders_on_first_use(tmp_path):
    """A missing embedded split is rendered with its fixed parameters, then loaded."""
    pytest.importorskip("synthesis.render")
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from synthesis.embedded_datasets import EmbeddedSplit, register_embedded_split

    name = "densepose_test_embedded_render"
    split = EmbeddedSplit("tiny", num_images=2, seed=7, width=64, height=64, max_people=2)
    register_embedded_split(name, split, tmp_path)
    try:
        dicts = DatasetCatalog.get(name)
        assert [d["image_id"] for d in dicts] == [1, 2]
        assert all((d["height"], d["width"]) == (64, 64) and "dense_file" in d for d in dicts)
        split_dir = tmp_path / "densepose_embedded" / "tiny"
        assert (split_dir / "annotations.json").is_file()

        # A split left by another renderer version is refused, or re-rendered on request.
        from synthesis.embedded_datasets import ensure_embedded_split

        params = split_dir / ".parts" / "params.json"
        params.write_text(params.read_text().replace('"renderer_version":"', '"renderer_version":"old'))
        with pytest.raises(DensePoseDatasetError, match="outdated.*renderer_version"):
            DatasetCatalog.get(name)
        ensure_embedded_split(split_dir, split, rerender_outdated=True)
        assert '"renderer_version":"old' not in params.read_text()
        assert [d["image_id"] for d in DatasetCatalog.get(name)] == [1, 2]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
