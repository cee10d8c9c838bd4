"""Data distillation's labeller: threshold selection, the person records it writes, and a run on
the mini split that registers, loads, trains, resumes and shards deterministically."""
import json
import shutil

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.data import DensePoseDatasetMapper
from densepose_ext.data import without_annotations
from synthesis.embedded_datasets import EMBEDDED_SPLITS
from densepose_ext.structures import DenseIUV, check_densepose_annotation, decode_dp_masks
from distill import pseudo_label
from densepose_ext.data.pseudo_labeled import (PseudoDatasetError, register_all_pseudo_labeled,
                                     register_pseudo_labeled)
from distill.pseudo_label import (detection_to_annotation, persons_per_image,
                                  select_score_threshold)
from toys import tiny_cfg

MINI = "densepose_embedded_mini"
OPTS = {"MODEL.MASK_ON": True, "MODEL.KEYPOINT_ON": True,
        "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": (16,), "MODEL.ROI_MASK_HEAD.CONV_DIM": 16,
        "TEST.AUG.MIN_SIZES": (112, 128), "TEST.AUG.MAX_SIZE": 160, "TEST.AUG.FLIP": True,
        "DATASETS.TRAIN": (MINI,), "DATASETS.TEST": (MINI,)}


def _opts_list():
    out = []
    for k, v in OPTS.items():
        out += [k, str(v)]
    cfg = tiny_cfg()
    for k in ("MODEL.FPN.OUT_CHANNELS", "MODEL.ROI_BOX_HEAD.FC_DIM",
              "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS",
              "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM",
              "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION",
              "MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE", "INPUT.MIN_SIZE_TEST",
              "INPUT.MAX_SIZE_TEST", "TEST.DETECTIONS_PER_IMAGE"):
        node = cfg
        for part in k.split("."):
            node = node[part]
        out += [k, str(node)]
    return out + ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from toys import tiny_model

    path = tmp_path_factory.mktemp("labeller") / "model.pth"
    torch.save({"model": tiny_model(**OPTS).state_dict()}, path)
    return path


def _run(weights, out, *extra):
    from toys import EMBEDDED_CFG

    return pseudo_label.main(["--config-file", str(EMBEDDED_CFG), "--weights", str(weights),
                              "--dataset", MINI, "--out", str(out), "--no-progress", *extra,
                              "--opts", *_opts_list()])


@pytest.fixture(scope="module")
def labelled(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("pseudo") / MINI
    return out, _run(weights, out, "--persons-per-image", "2")


def test_threshold_keeps_the_target_number_of_persons():
    scores = [0.9, 0.8, 0.8, 0.7, 0.3, 0.2]
    assert select_score_threshold(scores, num_images=2, per_image=2.0) == 0.7
    assert select_score_threshold(scores, num_images=2, per_image=1.0) == 0.8  # ties kept
    assert select_score_threshold(scores, num_images=2, per_image=10.0) == 0.2
    assert select_score_threshold(scores, num_images=2, per_image=0.0) > 0.9
    records = [{"annotations": [{"iscrowd": 0}, {"iscrowd": 1}]}, {"annotations": []}]
    assert persons_per_image(records) == 0.5


def test_person_record_samples_points_from_its_dense_iuv():
    t = 256
    I = torch.zeros(t, t, dtype=torch.long)
    I[40:200, 60:120] = 2
    I[40:200, 120:180] = 15
    u, v = torch.rand(t, t) * (I > 0), torch.rand(t, t) * (I > 0)
    det = {"bbox": [10.0, 20.0, 64.0, 128.0], "score": 0.9,
           "keypoints": [[float(k), 5.0, 1.0 if k < 9 else -1.0] for k in range(17)]}
    rng = np.random.default_rng(0)
    ann = detection_to_annotation(det, DenseIUV(I, u, v), 3, 7, rng, min_keypoints=8,
                                  keypoint_threshold=0.0, target_file="targets/3_0.png")
    check_densepose_annotation(ann)
    rows = (np.asarray(ann["dp_y"]) - 0.5).astype(int)
    cols = (np.asarray(ann["dp_x"]) - 0.5).astype(int)
    assert np.array_equal(ann["dp_I"], I.numpy()[rows, cols]) and min(ann["dp_I"]) > 0
    np.testing.assert_allclose(ann["dp_U"], u.numpy()[rows, cols], atol=1e-5)
    # person area 64 x 128 px x (share of the box labelled) / 16 px per point
    assert len(ann["dp_x"]) == min(100, int(64 * 128 * (160 * 120) / t ** 2) // 16)
    assert set(ann["dp_I"]) == {2, 15}
    coarse = decode_dp_masks(ann["dp_masks"])
    assert ((coarse > 0) == (I.numpy() > 0)).all()
    assert ann["num_keypoints"] == 9 and ann["keypoints"][2] == 2 and ann["keypoints"][-1] == 0
    assert ann["dp_dense_file"] == "targets/3_0.png"
    # too few confident keypoints: the person keeps all-zero keypoints
    few = detection_to_annotation(det, None, 3, 8, rng, min_keypoints=10,
                                  keypoint_threshold=0.0, target_file=None)
    assert few["num_keypoints"] == 0 and not any(few["keypoints"]) and "dp_x" not in few


def test_labelled_mini_registers_loads_and_trains(labelled):
    out, summary = labelled
    n_images = len(DatasetCatalog.get(MINI))
    assert summary["images"] == n_images
    assert summary["persons"] == round(2 * n_images)  # a random model scores below 1: ties rare
    name = register_pseudo_labeled(None, out)
    assert name == MINI + "_pseudo"
    records = DatasetCatalog.get(name)
    assert len(records) == n_images
    anns = [a for r in records for a in r["annotations"]]
    assert len(anns) == summary["persons"] and all("dp_x" in a for a in anns)
    assert all(len(a["keypoints"]) == 51 for a in anns)
    assert all(a["dp_dense_file"].startswith(str(out)) for a in anns)

    from toys import tiny_model

    mapper = DensePoseDatasetMapper(tiny_cfg(**OPTS), True)
    batch = [mapper(r) for r in records[:2]]
    model = tiny_model(**OPTS).train()
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert {"loss_densepose_I", "loss_keypoint", "loss_mask"} <= set(losses)


def test_rerun_resumes_and_shards_give_the_same_dataset(labelled, weights, tmp_path):
    out, _ = labelled
    before = (out / "annotations.json").read_bytes()
    again = _run(weights, out, "--persons-per-image", "2")
    assert again["labelled_now"] == 0 and (out / "annotations.json").read_bytes() == before
    # an interrupted image (its detections file gone) is labelled again, identically
    victim = sorted((out / "detections").iterdir())[3]
    victim.unlink()
    assert _run(weights, out, "--persons-per-image", "2")["labelled_now"] == 1
    assert (out / "annotations.json").read_bytes() == before
    sharded = tmp_path / MINI
    first = _run(weights, sharded, "--persons-per-image", "2", "--num-shards", "2",
                 "--shard", "1")
    assert "note" in first and not (sharded / "annotations.json").exists()
    with pytest.raises(PseudoDatasetError, match="incomplete"):
        DatasetCatalog.get(register_pseudo_labeled("partial_pseudo", sharded))
    _run(weights, sharded, "--persons-per-image", "2", "--num-shards", "2", "--shard", "0")
    a = json.loads((sharded / "annotations.json").read_text())
    b = json.loads(before)
    assert a["annotations"] == b["annotations"] and a["images"] == b["images"]


def test_other_settings_in_the_same_directory_are_refused(labelled, weights):
    out, _ = labelled
    with pytest.raises(SystemExit):
        _run(weights, out, "--persons-per-image", "2", "--multi-transform")


def test_multi_transform_labels_and_records_its_transforms(weights, tmp_path):
    out = tmp_path / "tta"
    summary = _run(weights, out, "--multi-transform", "--score-threshold", "0.0")
    params = json.loads((out / "pseudo_label.json").read_text())
    assert params["multi_transform"] and params["transforms"]["flip"]
    assert params["transforms"]["min_sizes"] == [112, 128]
    assert summary["persons"] > 0 and summary["score_threshold"] == 0.0


def test_image_folder_source_and_unreadable_image(weights, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for rec in DatasetCatalog.get(MINI)[:2]:
        shutil.copy(rec["file_name"], folder)
    records = pseudo_label.image_folder_records(folder)
    assert [r["image_id"] for r in records] == [1, 2] and records[0]["height"] == 256
    (folder / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(pseudo_label.PseudoLabelError, match="broken.jpg"):
        pseudo_label.image_folder_records(folder)


def test_root_scan_registers_broken_directories_that_fail_when_loaded(labelled, tmp_path):
    out, _ = labelled
    shutil.copytree(out, tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pseudo_label.json").write_text("{not json")
    names = register_all_pseudo_labeled(tmp_path)
    assert names == ["bad_pseudo", "good_pseudo"]
    with pytest.raises(PseudoDatasetError, match="bad/pseudo_label.json"):
        DatasetCatalog.get("bad_pseudo")
    assert len(DatasetCatalog.get("good_pseudo")) == len(DatasetCatalog.get(MINI))


def test_unlabeled_split_is_registered_without_annotations_and_has_its_own_seed():
    split = EMBEDDED_SPLITS["densepose_embedded_unlabeled"]
    others = [s for n, s in EMBEDDED_SPLITS.items() if n != "densepose_embedded_unlabeled"]
    assert split.seed not in {s.seed for s in others} and not split.annotated
    assert split.subdir not in {s.subdir for s in others}
    record = DatasetCatalog.get(MINI)[0]
    bare = without_annotations(record)
    assert set(bare) == {"file_name", "image_id", "height", "width"}


def test_quality_report_is_perfect_for_true_labels_and_not_for_a_random_model(labelled,
                                                                               tmp_path):
    from detectron2.data import MetadataCatalog

    from distill.evaluate_pseudo_labels import evaluate_pseudo_labels

    meta = MetadataCatalog.get(MINI)
    perfect = tmp_path / "truth"
    perfect.mkdir()
    shutil.copy(meta.json_file, perfect / "annotations.json")
    (perfect / "pseudo_label.json").write_text(json.dumps(
        {"complete": True, "image_root": meta.image_root, "source": f"dataset:{MINI}"}))
    best = evaluate_pseudo_labels(perfect)
    assert best["box_precision"] == best["box_recall"] == 1.0
    assert best["keypoint_error_px_median"] == 0.0
    dp = best["densepose_points"]
    assert dp["count"] > 500 and dp["part_accuracy"] == 1.0 and dp["auc10"] == 1.0
    out, _ = labelled
    random = evaluate_pseudo_labels(out)
    assert random["pseudo_persons"] == 32 and random["true_persons"] == best["true_persons"]
    assert random["densepose_points"]["auc10"] < 0.5
    assert random["box_precision"] < 1.0
