"""Visualisation: overlays draw where they should, the grid tool writes a PNG of the right size."""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
)

from densepose_ext.data import load_densepose_coco_json
from densepose_ext.vis import (
    draw_dataset_dict,
    draw_iuv,
    draw_points,
    iso_contours,
    make_grid,
    part_colors,
)
from toys import TOY_H, TOY_W, write_toy_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import visualize_data  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_vis")
    return write_toy_dataset(root)


def test_part_colors_distinct():
    colors = part_colors()
    assert colors.shape == (25, 3) and colors.dtype == np.uint8 and (colors[0] == 0).all()
    assert len({tuple(c) for c in colors[1:]}) == 24


def test_iso_contours_follow_levels_within_parts():
    labels = np.ones((4, 20), np.int64)
    labels[:, 10:] = 2
    values = np.tile(np.linspace(0, 0.99, 20), (4, 1))
    edge = iso_contours(values, labels, num_levels=4)
    cols = set(np.nonzero(edge[0])[0].tolist())
    # level changes at 0.25/0.5/0.75 -> columns 5, 15 (and 10 is a part border: not drawn)
    assert cols == {5, 15} and edge.all(axis=0)[[5, 15]].all()


def test_draw_iuv_only_changes_foreground():
    img = np.full((8, 8, 3), 100, np.uint8)
    i = np.zeros((8, 8), np.int64)
    i[2:6, 2:6] = 7
    out = draw_iuv(img, i, np.zeros((8, 8)), np.zeros((8, 8)))
    assert (out[i == 0] == 100).all() and (out[i > 0] != 100).any(axis=1).all()
    assert (img == 100).all()


def test_draw_points_clips_to_image():
    img = np.zeros((10, 10, 3), np.uint8)
    out = draw_points(img, np.array([[5.5, 5.5], [-3, 20]]), np.array([255, 0, 0]), radius=1,
                      outline=None)
    assert tuple(out[5, 5]) == (255, 0, 0) and tuple(out[5, 6]) == (255, 0, 0)
    assert out[..., 0].sum() == 255 * 9  # one 3x3 disk; the other point is outside


def test_draw_dataset_dict(toy):
    rec = load_densepose_coco_json(toy, toy.parent / "images")[0]
    out = draw_dataset_dict(rec, COCO_PERSON_KEYPOINT_NAMES, KEYPOINT_CONNECTION_RULES)
    assert out.shape == (TOY_H, TOY_W, 3) and out.dtype == np.uint8
    raw = cv2.cvtColor(cv2.imread(rec["file_name"]), cv2.COLOR_BGR2RGB)
    assert (out != raw).any(axis=2).mean() > 0.2  # overlay covers the people

    masks_only = draw_dataset_dict(rec, show=("masks",))
    changed = (masks_only != raw).any(axis=2)
    assert 0 < changed.mean() < (out != raw).any(axis=2).mean()  # outlines only: thin
    with pytest.raises(ValueError, match="unknown layers"):
        draw_dataset_dict(rec, show=("iuv", "heatmap"))


def test_make_grid_size():
    imgs = [np.zeros((30, 60, 3), np.uint8), np.full((50, 50, 3), 255, np.uint8)] * 3
    grid = make_grid(imgs, cols=4, cell_size=(40, 48), titles=list("abcdef"))
    assert grid.shape == (2 * 40, 4 * 48, 3)


def test_tool_writes_png_grid(toy, tmp_path):
    out = tmp_path / "grid.png"
    visualize_data.main(["--json", str(toy), "--image-root", str(toy.parent / "images"),
                         "--num", "8", "--cols", "3", "--cell", "64", "--out", str(out)])
    img = cv2.imread(str(out))
    # 2 images -> one row of 2 cells, each two 64x64 panels side by side
    assert img is not None and img.shape == (64, 2 * 2 * 64, 3)
    visualize_data.main(["--json", str(toy), "--image-root", str(toy.parent / "images"),
                         "--cols", "1", "--cell", "64", "--panels", "points", "--out", str(out)])
    assert cv2.imread(str(out)).shape == (2 * 64, 64, 3)
