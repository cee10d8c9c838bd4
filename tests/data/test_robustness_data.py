"""Bad data is caught at load with one clear error (fuzz cases of issue 17, data side).

Built from a copy of the ``densepose_embedded_mini`` split (json + 16 JPEGs): each case damages
one image or one record and checks the error type and that the message names the json file,
the record (image id / annotation id) and the field. Also: the image header cache (a second
load opens no image), the skip-invalid opt-in (count logged, list written), the stitcher's
source index, and registration of broken generated datasets (never at import).
"""
import io
import json
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from densepose_ext.data import DensePoseDatasetError, load_densepose_coco_json
from densepose_ext.data import densepose_coco
from toys import embedded_split_dir

MINI = embedded_split_dir("densepose_embedded_mini")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """A private cache dir per test (header cache, dropped-record lists)."""
    monkeypatch.setenv("DENSEPOSE_EXT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DENSEPOSE_SKIP_INVALID", raising=False)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """(json, image dir) of a private copy of the mini split."""
    root = tmp_path_factory.mktemp("mini")
    shutil.copy(MINI / "annotations.json", root / "annotations.json")
    shutil.copytree(MINI / "images", root / "images")
    return root / "annotations.json", root / "images"


def _variant(mini, tmp_path, mutate=None, damage_image=None):
    """A json (mutated) and image dir (one image damaged) in tmp_path; returns both."""
    json_file, images = mini
    data = json.loads(json_file.read_text())
    if mutate is not None:
        mutate(data)
    out = tmp_path / "bad.json"
    out.write_text(json.dumps(data))
    if damage_image is not None:
        copy = tmp_path / "images"
        shutil.copytree(images, copy)
        damage_image(copy / data["images"][2]["file_name"])
        images = copy
    return out, images


def _dp_ann(data):
    """The first annotation with a non-empty dp_masks entry, and that entry's index."""
    for ann in data["annotations"]:
        for k, m in enumerate(ann.get("dp_masks", [])):
            if isinstance(m, dict):
                return ann, k
    raise AssertionError("no DensePose annotation in the mini split")


def _set_dp(fn):
    def mutate(data):
        ann, k = _dp_ann(data)
        fn(ann, k)
    return mutate


# ----------------------------------------------------------------------------- records
# case -> (mutation, substrings the message must hold besides the json path)
RECORD_CASES = {
    "image id list": (lambda d: d["images"][0].__setitem__("id", [1]),
                      ["images[0]", "id must be an int or a string", "[1]"]),
    "image id dict": (lambda d: d["images"][0].__setitem__("id", {"a": 1}),
                      ["images[0]", "id must be an int or a string", "{'a': 1}"]),
    "annotation id list": (lambda d: d["annotations"][0].__setitem__("id", [7]),
                           ["annotations[0]", "id must be an int or a string", "[7]"]),
    "annotation image_id dict": (lambda d: d["annotations"][0].__setitem__("image_id", {"x": 1}),
                                 ["annotations[0]", "image_id must be an int or a string"]),
    "height as string": (lambda d: d["images"][1].__setitem__("height", "256"),
                         ["image id=2", "height must be a positive integer", "'256'"]),
    "dp_masks int size": (_set_dp(lambda a, k: a["dp_masks"][k].__setitem__("size", 256)),
                          ["annotation id=", "dp_masks[", "].size", "256"]),
    "dp_masks garbage counts": (
        _set_dp(lambda a, k: a["dp_masks"][k].__setitem__("counts", "garbage!!~~")),
        ["annotation id=", "].counts: malformed compressed RLE", "garbage"]),
    "dp_masks counts wrong total": (
        _set_dp(lambda a, k: a["dp_masks"][k].__setitem__("counts", "PPYo0")),
        ["annotation id=", "].counts: runs cover", "65536"]),
    "dp_masks counts int": (_set_dp(lambda a, k: a["dp_masks"][k].__setitem__("counts", 5)),
                            ["annotation id=", "].counts must be a string or a list"]),
    "dp_x numeric string": (_set_dp(lambda a, k: a["dp_x"].__setitem__(0, "3.5")),
                            ["annotation id=", "dp_x[0] must be a number", "'3.5'"]),
    "dp_U None": (_set_dp(lambda a, k: a["dp_U"].__setitem__(1, None)),
                  ["annotation id=", "dp_U[1] must be a number", "None"]),
    "dp_I bool list": (_set_dp(lambda a, k: a.__setitem__("dp_I", [True] * len(a["dp_I"]))),
                       ["annotation id=", "dp_I[0] must be a number"]),
    "segmentation RLE int size": (
        lambda d: d["annotations"][0].__setitem__("segmentation", {"size": 256, "counts": "0"}),
        ["annotation id=", "segmentation.size", "256"]),
    "segmentation RLE garbage": (
        lambda d: d["annotations"][0].__setitem__(
            "segmentation", {"size": [256, 256], "counts": "\x7f\x7f"}),
        ["annotation id=", "segmentation.counts: malformed"]),
    "segmentation numeric string": (
        lambda d: d["annotations"][0]["segmentation"][0].__setitem__(0, "1.0"),
        ["annotation id=", "segmentation polygon 0", "'1.0'"]),
    "keypoint string": (lambda d: d["annotations"][0]["keypoints"].__setitem__(3, "4"),
                        ["annotation id=", "keypoints[3]", "'4'"]),
    "absolute file_name": (lambda d: d["images"][2].__setitem__("file_name", "/etc/hostname"),
                           ["image id=3", "'/etc/hostname' lies outside the image root"]),
    "file_name climbing out": (lambda d: d["images"][2].__setitem__("file_name", "../x.jpg"),
                               ["image id=3", "'../x.jpg' lies outside the image root"]),
}


@pytest.mark.parametrize("case", sorted(RECORD_CASES))
def test_bad_record_is_named_at_load(mini, tmp_path, case):
    mutate, expected = RECORD_CASES[case]
    bad, images = _variant(mini, tmp_path, mutate)
    with pytest.raises(DensePoseDatasetError) as err:
        load_densepose_coco_json(bad, images)
    msg = str(err.value)
    assert str(bad) in msg and all(e in msg for e in expected), msg


# ----------------------------------------------------------------------------- images
def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero(path):
    path.write_bytes(b"")


def _flip_header(path):
    """Flip bits in the SOF0 height field: the header now claims another size."""
    raw = bytearray(path.read_bytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 6] ^= 0x01  # height 256 -> 257
    path.write_bytes(bytes(raw))


def _flip_magic(path):
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0x10
    path.write_bytes(bytes(raw))


def _resize(path):
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((128, 96)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())


def _text(path):
    path.write_text("not an image")


IMAGE_CASES = {
    "truncated": (_truncate, "truncated JPEG"),
    "zero bytes": (_zero, "is empty (0 bytes)"),
    "bit-flipped size": (_flip_header, "the json says width=256, height=256"),
    "bit-flipped magic": (_flip_magic, "is not a readable image"),
    "wrong size": (_resize, "is 128x96 (width x height)"),
    "not an image": (_text, "is not a readable image"),
    "missing": (lambda p: p.unlink(), "does not exist"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_image_is_named_at_load(mini, tmp_path, case):
    damage, expected = IMAGE_CASES[case]
    bad, images = _variant(mini, tmp_path, damage_image=damage)
    with pytest.raises(DensePoseDatasetError) as err:
        load_densepose_coco_json(bad, images)
    msg = str(err.value)
    assert str(bad) in msg and "image id=3" in msg and "000003.jpg" in msg and expected in msg, msg


def test_header_cache_second_load_opens_no_image(mini, tmp_path, monkeypatch):
    json_file, images = mini
    calls = []
    real = densepose_coco.read_image_header
    monkeypatch.setattr(densepose_coco, "read_image_header",
                        lambda p: calls.append(p) or real(p))
    first = load_densepose_coco_json(json_file, images)
    assert len(calls) == 16
    calls.clear()
    assert load_densepose_coco_json(json_file, images) == first and calls == []
    # a changed file (size / mtime) is read again, and a damaged one is caught
    copy = tmp_path / "images"
    shutil.copytree(images, copy)
    load_densepose_coco_json(json_file, copy)
    calls.clear()
    _resize(copy / "000005.jpg")
    with pytest.raises(DensePoseDatasetError, match=r"image id=5: image file .*000005.jpg is 128x96"):
        load_densepose_coco_json(json_file, copy)
    assert [Path(p).name for p in calls] == ["000005.jpg"]


def test_changed_json_is_checked_again(mini, tmp_path):
    """Record checks are skipped only for the very json (size, mtime) that passed them."""
    json_file, images = mini
    good = tmp_path / "a.json"
    shutil.copy(json_file, good)
    load_densepose_coco_json(good, images)
    data = json.loads(good.read_text())
    _set_dp(lambda a, k: a["dp_x"].__setitem__(0, "3.5"))(data)
    good.write_text(json.dumps(data))
    with pytest.raises(DensePoseDatasetError, match=r"dp_x\[0\] must be a number"):
        load_densepose_coco_json(good, images)


# ----------------------------------------------------------------------------- skip invalid
def _two_bad(mini, tmp_path):
    def mutate(data):
        ann, _ = _dp_ann(data)
        ann["dp_x"][0] = "3.5"
    return _variant(mini, tmp_path, mutate, damage_image=_zero)


@pytest.mark.parametrize("how", ["argument", "env"])
def test_skip_invalid_drops_counts_and_lists(mini, tmp_path, monkeypatch, caplog, how):
    bad, images = _two_bad(mini, tmp_path)
    data = json.loads(bad.read_text())
    bad_ann_image = _dp_ann(data)[0]["image_id"]
    with pytest.raises(DensePoseDatasetError):
        load_densepose_coco_json(bad, images)  # the default stays strict
    if how == "env":
        monkeypatch.setenv("DENSEPOSE_SKIP_INVALID", "1")
        kwargs = {}
    else:
        kwargs = {"skip_invalid": True}
    with caplog.at_level(logging.WARNING):
        dicts = load_densepose_coco_json(bad, images, **kwargs)
    kept = {d["image_id"] for d in dicts}
    assert len(dicts) == 14 and 3 not in kept and bad_ann_image not in kept
    assert "dropped 2 image(s)" in caplog.text
    listed = list((tmp_path / "cache" / "dataset_checks").glob("bad-*.dropped.json"))
    assert len(listed) == 1 and str(listed[0]) in caplog.text
    report = json.loads(listed[0].read_text())
    assert report["dropped_images"] == 2 and report["kept_images"] == 14
    assert {p["image_id"] for p in report["problems"]} == {3, bad_ann_image}
    assert any("dp_x[0] must be a number" in p["error"] for p in report["problems"])


def test_huge_image_record_warns(mini, tmp_path, monkeypatch, caplog):
    json_file, images = mini
    monkeypatch.setattr(densepose_coco, "MANY_ANNOTATIONS", 2)
    with caplog.at_level(logging.WARNING):
        load_densepose_coco_json(json_file, images)
    assert "annotations (more than 2)" in caplog.text and str(json_file) in caplog.text


# ----------------------------------------------------------------------------- stitch index
STITCH_CASES = {
    "image id list": (lambda d: d["images"][0].__setitem__("id", [1]),
                      ["images[0]", "id must be an int or a string"]),
    "annotation id dict": (lambda d: d["annotations"][0].__setitem__("id", {"a": 1}),
                           ["annotations[0]", "id must be an int or a string"]),
    "image_id list": (lambda d: d["annotations"][0].__setitem__("image_id", [1]),
                      ["annotations[0]", "image_id must be an int or a string"]),
    "width list": (lambda d: d["images"][0].__setitem__("width", [256]),
                   ["image id=1", "width must be a positive integer"]),
    "dp_masks int size": (_set_dp(lambda a, k: a["dp_masks"][k].__setitem__("size", 256)),
                          ["annotation id=", "].size"]),
    "segmentation RLE int size": (
        lambda d: d["annotations"][0].__setitem__("segmentation", {"size": 256, "counts": "0"}),
        ["annotation id=", "segmentation.size"]),
    "dp_x numeric string": (_set_dp(lambda a, k: a["dp_x"].__setitem__(0, "3.5")),
                            ["annotation id=", "dp_x[0] must be a number"]),
}


@pytest.mark.parametrize("case", sorted(STITCH_CASES))
def test_stitch_source_index_names_record(mini, tmp_path, case):
    from synthesis.stitch_index import SourcePoolError, load_source_pool

    mutate, expected = STITCH_CASES[case]
    bad, images = _variant(mini, tmp_path, mutate)
    with pytest.raises(SourcePoolError) as err:
        load_source_pool(bad, images, min_height=0, min_keypoints=0)
    msg = str(err.value)
    assert str(bad) in msg and all(e in msg for e in expected), msg


# ----------------------------------------------------------------------------- registration
def _remove(names):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"body_model": [1]}'])
def test_corrupt_stitched_info_registers_and_fails_on_use(mini, tmp_path, content):
    from detectron2.data import DatasetCatalog

    from synthesis.stitched_datasets import register_all_stitched

    json_file, images = mini
    for name in ("good", "broken"):
        d = tmp_path / "stitched" / name
        d.mkdir(parents=True)
        shutil.copy(json_file, d / "annotations.json")
        shutil.copytree(images, d / "images")
    (tmp_path / "stitched" / "broken" / "info.json").write_text(content)
    try:
        assert register_all_stitched(tmp_path) == ["stitched_broken", "stitched_good"]
        assert len(DatasetCatalog.get("stitched_good")) == 16
        with pytest.raises(ValueError, match=r"stitched/broken/info.json"):
            DatasetCatalog.get("stitched_broken")
    finally:
        _remove(["stitched_broken", "stitched_good"])


@pytest.mark.parametrize("content", ["{not json", "[]", '{"source_dataset": [1], "image_root": "x"}'])
def test_corrupt_interpolation_json_registers_and_fails_on_use(tmp_path, content):
    from detectron2.data import DatasetCatalog

    from densepose_ext.data import InterpolatedDatasetError, register_all_interpolated

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "interpolation.json").write_text(content)
    try:
        assert register_all_interpolated(tmp_path) == ["broken_interpolated"]
        with pytest.raises(InterpolatedDatasetError, match=r"broken/interpolation.json"):
            DatasetCatalog.get("broken_interpolated")
    finally:
        _remove(["broken_interpolated"])


def test_import_time_registration_survives_every_broken_generated_dataset(tmp_path):
    """The built-in registration (what importing synthesis.builtin_datasets runs) over a
    datasets root whose generated datasets are all broken: no exception, names registered."""
    from detectron2.data import DatasetCatalog

    from synthesis.builtin_datasets import register_builtin_datasets

    for sub, params in (("stitched/s1", "info.json"), ("interpolated/i1", "interpolation.json"),
                        ("pseudo_labeled/p1", "pseudo_label.json")):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / params).write_text("{broken")
    (tmp_path / "stitched" / "s1" / "annotations.json").write_text("{}")
    names = ["stitched_s1", "i1_interpolated", "p1_pseudo"]
    try:
        register_builtin_datasets(tmp_path)
        assert set(names) <= set(DatasetCatalog.list())
        for name in names:
            with pytest.raises(ValueError):
                DatasetCatalog.get(name)
    finally:
        _remove(names)
