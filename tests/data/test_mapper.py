"""DensePoseDatasetMapper: output shapes/types, resize keeps box-relative data, a flipped point
shows what the flipped image's surface shows, clear errors for unreadable images."""
import pickle

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
)
from detectron2.structures import Boxes

from densepose_ext.data import (
    DensePoseDatasetError,
    DensePoseDatasetMapper,
    load_densepose_coco_json,
)
from densepose_ext.structures import FINE_PART_HFLIP, DensePoseData, DensePoseList
from toys import FLIP_INDICES, toy_transform_data, write_toy_dataset



@pytest.fixture(scope="module")
def toy_dicts(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_mapper")
    json_file = write_toy_dataset(root)
    return load_densepose_coco_json(json_file, root / "images")


def _mapper(augs, **kw):
    return DensePoseDatasetMapper(
        True, augmentations=augs, image_format="RGB", use_instance_mask=True,
        use_keypoint=True, keypoint_hflip_indices=FLIP_INDICES,
        transform_data=toy_transform_data(), **kw)


def _image_points(d: DensePoseData, box_xyxy: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = box_xyxy.tolist()
    return torch.stack([x0 + d.x * (x1 - x0) / 256, y0 + d.y * (y1 - y0) / 256], dim=1)


def test_output_shapes_and_types(toy_dicts):
    out = _mapper([T.ResizeShortestEdge(128, 1000)])(toy_dicts[0])
    img, inst = out["image"], out["instances"]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 128, 160)
    assert inst.image_size == (128, 160) and len(inst) == 2
    assert isinstance(inst.gt_boxes, Boxes) and inst.gt_classes.tolist() == [0, 0]
    assert tuple(inst.gt_keypoints.tensor.shape) == (2, 17, 3)
    assert len(inst.gt_masks) == 2
    assert torch.allclose(inst.gt_boxes.tensor[0], torch.tensor([20.0, 16.0, 80.0, 96.0]))
    dp = inst.gt_densepose
    assert isinstance(dp, DensePoseList) and dp[1] is None and isinstance(dp[0], DensePoseData)
    assert tuple(dp[0].segm.shape) == (256, 256) and dp[0].i.dtype == torch.long
    # resize keeps box-relative data: identical to the annotation
    ann = toy_dicts[0]["annotations"][0]
    assert torch.allclose(dp[0].x, torch.tensor(ann["dp_x"])) and dp[0].i.tolist() == ann["dp_I"]
    assert toy_dicts[0]["annotations"][0]["bbox"] == [10.0, 8.0, 30.0, 40.0]  # input untouched


def test_resized_points_land_on_the_same_surface(toy_dicts):
    """After a 2x resize, each point's pixel in the resized dense map has its (I, U, V)."""
    rec = toy_dicts[1]
    out = _mapper([T.ResizeShortestEdge(128, 1000)])(rec)
    dense = np.load(rec["dense_file"])
    big = {k: np.repeat(np.repeat(dense[k], 2, 0), 2, 1) for k in ("I", "U", "V")}
    d = out["instances"].gt_densepose[0]
    px = _image_points(d, out["instances"].gt_boxes.tensor[0]).floor().long()
    assert (big["I"][px[:, 1], px[:, 0]] == d.i.numpy()).all()
    assert np.allclose(big["U"][px[:, 1], px[:, 0]], d.u.numpy(), atol=1e-6)


def test_flip_matches_flipped_image_surface(toy_dicts):
    """In the toy world the mirrored image shows parts 3 <-> 4 and U -> 1 - U; every flipped
    point must carry the (I, U, V) of the flipped dense map at its pixel."""
    rec = toy_dicts[0]
    out = _mapper([T.RandomFlip(prob=1.0, horizontal=True)])(rec)
    dense = np.load(rec["dense_file"])
    flipped = {k: dense[k][:, ::-1] for k in ("I", "U", "V")}
    perm = np.array(FINE_PART_HFLIP)
    inst = out["instances"]
    d = inst.gt_densepose[0]
    px = _image_points(d, inst.gt_boxes.tensor[0]).floor().long().numpy()
    seen_i = perm[flipped["I"][px[:, 1], px[:, 0]]]
    seen_u = 1 - flipped["U"][px[:, 1], px[:, 0]]
    assert (seen_i == d.i.numpy()).all()
    assert np.abs(seen_u - d.u.numpy()).max() <= 1 / 255 + 1e-6
    assert np.abs(flipped["V"][px[:, 1], px[:, 0]] - d.v.numpy()).max() <= 1 / 255 + 1e-6
    # the box was mirrored and keypoints swapped sides
    assert torch.allclose(inst.gt_boxes.tensor[0], torch.tensor([40.0, 8.0, 70.0, 48.0]))
    kp = inst.gt_keypoints.tensor[0]
    raw = np.asarray(rec["annotations"][0]["keypoints"]).reshape(17, 3)
    assert kp[0, 2] == 0 and kp[1, 2] == 2
    assert kp[1, 0] == pytest.approx(80 - raw[2, 0])  # left eye = mirrored right eye
    assert kp[2, 0] == pytest.approx(80 - raw[1, 0]) and kp[1, 1] == pytest.approx(raw[2, 1])


def test_mapping_leaves_the_dataset_dict_unchanged(toy_dicts):
    """The data loader reuses dataset dicts: a flip + resize must not change the original."""
    before = pickle.dumps(toy_dicts[0])
    mapper = _mapper([T.ResizeShortestEdge(128, 1000), T.RandomFlip(prob=1.0)])
    for _ in range(2):
        out = mapper(toy_dicts[0])
        assert len(out["instances"]) == 2
    assert pickle.dumps(toy_dicts[0]) == before


def test_inference_mode_has_no_annotations(toy_dicts):
    mapper = DensePoseDatasetMapper(False, augmentations=[T.ResizeShortestEdge(32, 1000)])
    out = mapper(toy_dicts[0])
    assert "annotations" not in out and "instances" not in out
    assert (out["height"], out["width"]) == (64, 80) and tuple(out["image"].shape) == (3, 32, 40)


def test_unreadable_image_names_file(toy_dicts, tmp_path):
    mapper = _mapper([])
    rec = dict(toy_dicts[0], file_name=str(tmp_path / "gone.png"))
    with pytest.raises(DensePoseDatasetError, match=r"gone.png \(image id=1\): cannot read image"):
        mapper(rec)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image at all")
    with pytest.raises(DensePoseDatasetError, match=r"corrupt.png \(image id=1\): cannot read"):
        mapper(dict(toy_dicts[0], file_name=str(corrupt)))


def test_crop_is_refused():
    with pytest.raises(ValueError, match="crop"):
        DensePoseDatasetMapper(True, augmentations=[T.RandomCrop("absolute", (10, 10))])
    cfg = get_cfg()
    cfg.INPUT.CROP.ENABLED = True
    with pytest.raises(ValueError, match="INPUT.CROP.ENABLED"):
        DensePoseDatasetMapper(cfg, is_train=True)


def test_from_config(toy_dicts):
    name = "densepose_test_mapper_toy"
    DatasetCatalog.register(name, lambda: toy_dicts)
    MetadataCatalog.get(name).set(
        keypoint_names=COCO_PERSON_KEYPOINT_NAMES, keypoint_flip_map=COCO_PERSON_KEYPOINT_FLIP_MAP)
    try:
        cfg = get_cfg()
        cfg.DATASETS.TRAIN = (name,)
        cfg.MODEL.MASK_ON = cfg.MODEL.KEYPOINT_ON = True
        cfg.INPUT.MIN_SIZE_TRAIN = (96,)
        cfg.INPUT.FORMAT = "RGB"
        mapper = DensePoseDatasetMapper(cfg, is_train=True, transform_data=toy_transform_data())
        assert mapper.keypoint_hflip_indices == FLIP_INDICES
        torch.manual_seed(0)
        np.random.seed(0)
        outs = [mapper(toy_dicts[1]) for _ in range(6)]  # random flips: both branches
        assert {tuple(o["image"].shape) for o in outs} == {(3, 96, 120)}
        assert all(len(o["instances"].gt_densepose) == 1 for o in outs)
        # without an explicit table the mapper defers loading to the first flip, and still
        # pickles (data-loader workers)
        MetadataCatalog.get(name).densepose_uv_symmetry_file = "/nonexistent/UV.mat"
        lazy = pickle.loads(pickle.dumps(DensePoseDatasetMapper(cfg, is_train=True)))
        with pytest.raises(ValueError, match="/nonexistent/UV.mat"):
            lazy.transform_data
        # DENSEPOSE_DATA_DIR (official files) takes precedence over the metadata
        cfg.DENSEPOSE_DATA_DIR = "/official/files"
        with pytest.raises(ValueError, match="/official/files/UV_symmetry_transforms.mat"):
            DensePoseDatasetMapper(cfg, is_train=True).transform_data
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# --------------------------------------------------------------------------------------------
# With the embedded renderer and body model: the flipped ground truth against the exact mirror.


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """4 rendered 128x128 images (the body model is built/cached on first use)."""
    render = pytest.importorskip("synthesis.render")
    root = tmp_path_factory.mktemp("rendered")
    json_file = render.render_dataset(root, num_images=4, seed=5, width=128, height=128,
                                      progress=False)
    return load_densepose_coco_json(json_file, root / "images")


def _exact_mirror_iuv(body, i, u, v):
    """(I, U, V) of the mirror images of the surface points (I, U, V), through the mesh's
    exact mirror map (no 256-grid tables): surface point -> mirrored face, same barycentrics."""
    face, bary = body.iuv_to_surface(i, u, v)
    tpl = body.template
    mface = tpl.face_mirror[face]
    mv = tpl.mirror[tpl.faces[face]]  # (P,3) mirrored corner vertices
    match = tpl.faces[mface][:, :, None] == mv[:, None, :]  # (P,3,3) corner k <- corner j
    mbary = np.einsum("pkj,pj->pk", match.astype(np.float64), bary)
    return body.surface_to_iuv(mface, mbary)


def test_flip_agrees_with_rendered_mirror(rendered, capsys):
    """After resize (x2) + flip, every annotated point lands on the pixel of the flipped dense
    map that shows its original surface point, and its flipped (I, U, V) matches the exact
    mirror of that surface point up to the 256-grid quantisation of the symmetry tables."""
    from densepose_ext.body.body_model import get_body_model
    from densepose_ext.structures import DensePoseTransformData

    body = get_body_model()
    mapper = DensePoseDatasetMapper(
        True, augmentations=[T.ResizeShortestEdge(256, 1000), T.RandomFlip(prob=1.0)],
        transform_data=DensePoseTransformData.from_body_model(body))
    located, same_i, du, dv, n = 0, 0, [], [], 0
    for rec in rendered:
        out = mapper(rec)
        inst = out["instances"]
        assert len(inst) == len(rec["annotations"])
        with np.load(rec["dense_file"]) as dense:
            big = {k: np.repeat(np.repeat(dense[k], 2, 0), 2, 1)[:, ::-1] for k in "IUV"}
        for ann, d, box in zip(rec["annotations"], inst.gt_densepose, inst.gt_boxes.tensor):
            px = _image_points(d, box).floor().long().numpy()
            orig = [np.asarray(ann[k]) for k in ("dp_I", "dp_U", "dp_V")]
            here = [big[k][px[:, 1], px[:, 0]] for k in "IUV"]
            located += int(np.sum((here[0] == orig[0]) & (np.abs(here[1] - orig[1]) < 1e-4)
                                  & (np.abs(here[2] - orig[2]) < 1e-4)))
            ri, ru, rv = _exact_mirror_iuv(body, orig[0].astype(np.int64), orig[1], orig[2])
            same = ri == d.i.numpy()
            same_i += int(same.sum())
            du.append(np.abs(ru - d.u.numpy())[same])
            dv.append(np.abs(rv - d.v.numpy())[same])
            n += len(d)
    du, dv = np.concatenate(du), np.concatenate(dv)
    with capsys.disabled():
        print(f"\n[flip agreement] {n} points: located {located / n:.4f}, part label "
              f"{same_i / n:.4f}; |dU| median {np.median(du):.4f} p90 {np.quantile(du, 0.9):.4f}, "
              f"|dV| median {np.median(dv):.4f} p90 {np.quantile(dv, 0.9):.4f}, "
              f"U and V within 0.02: {np.mean((du < 0.02) & (dv < 0.02)):.4f}")
    assert n > 100
    assert located == n
    assert same_i / n > 0.95
    assert np.mean((du < 0.02) & (dv < 0.02)) > 0.8
