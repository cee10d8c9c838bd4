"""Small worlds the tests share: shrunk configs and models, the toy DensePose-COCO dataset and
its flip tables, and where the repository and its embedded splits are."""
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data.datasets.builtin_meta import (COCO_PERSON_KEYPOINT_FLIP_MAP,
                                                   COCO_PERSON_KEYPOINT_NAMES)
from detectron2.modeling import build_model
from pycocotools import mask as mask_util

from densepose_ext.config import add_densepose_config
from densepose_ext.data import datasets_root
from densepose_ext.structures import DensePoseTransformData
from synthesis.embedded_datasets import EMBEDDED_SPLITS, ensure_embedded_split

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EMBEDDED_CFG = CONFIGS / "embedded" / "densepose_rcnn_R_18_GN_FPN.yaml"
_SWAP = dict(COCO_PERSON_KEYPOINT_FLIP_MAP)
_SWAP.update({b: a for a, b in COCO_PERSON_KEYPOINT_FLIP_MAP})
#: COCO keypoint index after a horizontal flip (left <-> right names swapped), from
#: detectron2's flip map
FLIP_INDICES = [COCO_PERSON_KEYPOINT_NAMES.index(_SWAP.get(n, n)) for n in COCO_PERSON_KEYPOINT_NAMES]
#: the (x + 0.5) / 255 grid of the toy world's U and V
GRID = (np.arange(256) + 0.5) / 255.0


def embedded_split_dir(name: str) -> Path:
    """Directory of an embedded split, where the datasets code puts it, rendered first when it
    is missing (as loading the dataset would)."""
    split_dir = datasets_root() / "densepose_embedded" / EMBEDDED_SPLITS[name].subdir
    ensure_embedded_split(split_dir, EMBEDDED_SPLITS[name])
    return split_dir


def shrunk_cfg(config_file: Path, *opts):
    """A shipped config at test size: CPU, 128 px inputs, 32-channel FPN, then ``opts``."""
    cfg = add_densepose_config(get_cfg())
    cfg.merge_from_file(str(config_file))
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu",
        "INPUT.MIN_SIZE_TRAIN", (128,), "INPUT.MAX_SIZE_TRAIN", 128,
        "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 128,
        "MODEL.FPN.OUT_CHANNELS", 32, *opts,
    ])
    return cfg


def tiny_cfg(**overrides):
    """The embedded DensePose R-CNN config shrunk further: 2-conv 32-channel head."""
    opts = [x for kv in overrides.items() for x in kv]
    return shrunk_cfg(EMBEDDED_CFG, "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
                      "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS", 2,
                      "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM", 32,
                      "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION", 7,
                      "MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE", 28,
                      "MODEL.RPN.POST_NMS_TOPK_TRAIN", 64, "MODEL.RPN.POST_NMS_TOPK_TEST", 32,
                      "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
                      "TEST.DETECTIONS_PER_IMAGE", 5, *opts)


def tiny_model(seed: int = 0, **overrides):
    """:func:`tiny_cfg`'s model, initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_model(tiny_cfg(**overrides))


def toy_transform_data() -> DensePoseTransformData:
    """Flip tables of the toy world of :func:`write_toy_dataset`: U -> 1 - U, V unchanged."""
    u = np.broadcast_to(np.clip(1.0 - GRID, 0, 1)[None, None, :], (24, 256, 256))
    v = np.broadcast_to(np.clip(GRID, 0, 1)[None, :, None], (24, 256, 256))
    return DensePoseTransformData.from_tables(u.copy(), v.copy())


TOY_H, TOY_W = 64, 80
# Toy world: a person box is split into a left half (part 3) and a right half (part 4);
# U = relative x in the box, V = relative y. Its mirror image is the same world with parts
# 3 <-> 4 exchanged and U -> 1 - U, which is what the toy flip tables encode.
TOY_PEOPLE = {  # image id -> list of (annotation id, integer box [x0, y0, w, h], has DensePose)
    1: [(11, [10, 8, 30, 40], True), (12, [48, 10, 24, 40], False)],
    2: [(21, [20, 4, 40, 56], True)],
}


def coarse_masks(frame: np.ndarray) -> list:
    """14 dp_masks entries (RLE or []) from a 256x256 coarse label map."""
    out = []
    for part in range(1, 15):
        m = np.asfortranarray((frame == part).astype(np.uint8))
        if not m.any():
            out.append([])
            continue
        rle = mask_util.encode(m)
        out.append({"size": [256, 256], "counts": rle["counts"].decode("ascii")})
    return out


def _toy_person(ann_id, image_id, box, has_dp, dense, rng):
    x0, y0, w, h = box
    ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    left = xs < x0 + w / 2
    dense["I"][ys, xs] = np.where(left, 3, 4)
    dense["U"][ys, xs] = (xs + 0.5 - x0) / w
    dense["V"][ys, xs] = (ys + 0.5 - y0) / h
    dense["instance"][ys, xs] = ann_id if has_dp else 0
    kps = np.zeros((17, 3))
    kps[:, 0] = x0 + 2 + np.arange(17) * (w - 4) / 17
    kps[:, 1] = y0 + h / 2
    kps[:, 2] = 2
    kps[0] = 0  # one unlabelled keypoint
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [float(c) for c in box],
        "area": float(w * h),
        "segmentation": [[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h]],
        "keypoints": kps.reshape(-1).tolist(),
        "num_keypoints": 16,
    }
    if has_dp:
        # sample pixels of the box; points at pixel centres, values = the dense maps there
        n = 24
        px = rng.integers(x0, x0 + w, n)
        py = rng.integers(y0, y0 + h, n)
        frame = np.zeros((256, 256), dtype=np.uint8)
        frame[:, :128] = 2  # right hand (coarse 2) ~ fine part 3
        frame[:, 128:] = 3  # left hand (coarse 3) ~ fine part 4
        frame[:32, :] = 0
        ann.update(
            dp_x=((px + 0.5 - x0) * 256 / w).tolist(),
            dp_y=((py + 0.5 - y0) * 256 / h).tolist(),
            dp_I=dense["I"][py, px].astype(float).tolist(),
            dp_U=dense["U"][py, px].astype(float).tolist(),
            dp_V=dense["V"][py, px].astype(float).tolist(),
            dp_masks=coarse_masks(frame),
        )
    return ann


def write_toy_dataset(root: Path, seed: int = 0) -> Path:
    """Write root/images/*.png, root/dense/*.npz and root/annotations.json; return the json."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "dense").mkdir(exist_ok=True)
    images, annotations = [], []
    for image_id, people in TOY_PEOPLE.items():
        dense = {
            "I": np.zeros((TOY_H, TOY_W), np.uint8),
            "U": np.zeros((TOY_H, TOY_W), np.float32),
            "V": np.zeros((TOY_H, TOY_W), np.float32),
            "instance": np.zeros((TOY_H, TOY_W), np.int32),
        }
        for ann_id, box, has_dp in people:
            annotations.append(_toy_person(ann_id, image_id, box, has_dp, dense, rng))
        name = f"{image_id:06d}"
        img = (rng.random((TOY_H, TOY_W, 3)) * 80).astype(np.uint8)
        img[dense["I"] > 0] += 120
        cv2.imwrite(str(root / "images" / f"{name}.png"), img)
        np.savez(root / "dense" / f"{name}.npz", **dense)
        images.append({"id": image_id, "file_name": f"{name}.png", "height": TOY_H, "width": TOY_W})
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    json_file = root / "annotations.json"
    json_file.write_text(json.dumps(data))
    return json_file
