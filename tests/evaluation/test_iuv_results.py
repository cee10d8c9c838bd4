"""Chart outputs -> box IUV, box/image pixel mapping, pasting and the compact result format."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from densepose_ext.evaluation import (
    DensePoseEvaluationError,
    box_cells_at_points,
    box_grid_size,
    chart_output_to_box_iuv,
    decode_detection_iuv,
    decode_iuv_png,
    encode_iuv_png,
    instances_to_results,
    paste_box_map,
    paste_iuv_in_image,
)


def _logits(S=4, part=5):
    """Coarse foreground on the left half, fine part ``part`` everywhere (fine background
    channel even higher), U/V of ``part`` = 0.3 / 1.7 and 0.9 elsewhere."""
    coarse = torch.zeros(2, S, S)
    coarse[1, :, : S // 2] = 1.0
    coarse[0, :, S // 2:] = 1.0
    fine = torch.zeros(25, S, S)
    fine[part] = 2.0
    fine[0] = 5.0  # background channel of the fine segmentation does not decide the part
    u = torch.full((25, S, S), 0.9)
    v = torch.full((25, S, S), 0.9)
    u[part], v[part] = 0.3, 1.7
    return coarse, fine, u, v


def test_box_grid_size_rounds_and_is_at_least_one():
    assert box_grid_size((3.2, 1.0, 7.6, 5.2)) == (5, 8)
    assert box_grid_size((0, 0, 0.2, 0.0)) == (1, 1)


def test_chart_output_to_box_iuv_on_hand_made_logits():
    I, U, V = chart_output_to_box_iuv(*_logits(), box_xywh=(5.0, 7.0, 8.0, 6.0))
    assert I.shape == U.shape == V.shape == (6, 8) and I.dtype == np.uint8
    assert U.dtype == V.dtype == np.float32
    assert np.all(I[:, :4] == 5) and np.all(I[:, 4:] == 0)
    np.testing.assert_allclose(U[:, :4], 0.3, atol=1e-6)
    assert np.all(V[:, :4] == 1.0)  # clipped to [0, 1]
    assert np.all(U[:, 4:] == 0) and np.all(V[:, 4:] == 0)


def test_chart_output_same_size_matches_numpy_argmax():
    """At the grid's own size the resize is the identity: I, U, V follow the argmax rules."""
    g = torch.Generator().manual_seed(0)
    S = 6
    coarse, fine = torch.randn(2, S, S, generator=g), torch.randn(25, S, S, generator=g)
    u, v = torch.rand(25, S, S, generator=g), torch.rand(25, S, S, generator=g)
    I, U, V = chart_output_to_box_iuv(coarse, fine, u, v, (0, 0, S, S))
    fg = coarse.numpy().argmax(0) == 1
    part = np.where(fg, fine.numpy()[1:].argmax(0) + 1, 0)
    np.testing.assert_array_equal(I, part)
    rows, cols = np.nonzero(fg)
    np.testing.assert_allclose(U[rows, cols], u.numpy()[part[rows, cols], rows, cols], atol=1e-6)
    assert np.all(U[~fg] == 0) and np.all(V[~fg] == 0)
    with pytest.raises(ValueError, match="fine_segm"):
        chart_output_to_box_iuv(coarse, fine[:24], u, v, (0, 0, S, S))


def test_points_and_pasting_use_the_same_cells():
    """The value pasted at an image pixel is the box cell that contains the pixel centre."""
    box = (3.3, 2.6, 9.1, 5.7)
    hi, wi = box_grid_size(box)
    box_map = np.arange(hi * wi, dtype=np.int32).reshape(hi, wi) + 1
    img = paste_box_map(box_map, box, (12, 16))
    rows, cols = np.nonzero(img)
    r, c, inside = box_cells_at_points(cols + 0.5, rows + 0.5, box, (hi, wi))
    assert inside.all()
    np.testing.assert_array_equal(img[rows, cols], box_map[r, c])
    # every pixel whose centre lies in the box was pasted, no other
    ys, xs = np.mgrid[0:12, 0:16] + 0.5
    in_box = (xs >= box[0]) & (xs < box[0] + box[2]) & (ys >= box[1]) & (ys < box[1] + box[3])
    np.testing.assert_array_equal(img > 0, in_box)
    _, _, inside = box_cells_at_points(np.array([3.0, 13.0]), np.array([3.0, 3.0]), box, (hi, wi))
    assert inside.tolist() == [False, False]


def test_paste_clips_boxes_beyond_the_image():
    img = paste_box_map(np.ones((10, 10), np.uint8), (-5, 6, 10, 10), (8, 8))
    assert img.shape == (8, 8) and img[6:, :5].all() and img.sum() == 10


def test_paste_iuv_higher_score_on_top():
    a = (np.full((4, 4), 3, np.uint8), np.full((4, 4), 0.1, np.float32),
         np.full((4, 4), 0.2, np.float32))
    b = (np.full((4, 4), 7, np.uint8), np.full((4, 4), 0.5, np.float32),
         np.full((4, 4), 0.6, np.float32))
    b[0][0, 0] = 0  # a background cell of b does not hide a
    boxes = np.array([[0, 0, 4, 4], [2, 2, 4, 4]], np.float64)
    for order in ([0, 1], [1, 0]):
        iuvs = [[a, b][k] for k in order]
        scores = np.array([[0.9, 0.4][k] for k in order])
        I, U, V, inst = paste_iuv_in_image(iuvs, boxes[order], scores, (8, 8))
        assert I[3, 3] == 3 and U[3, 3] == pytest.approx(0.1)  # a (score .9) wins the overlap
        assert I[2, 2] == 3 and I[5, 5] == 7 and V[5, 5] == pytest.approx(0.6)
        assert I[7, 0] == 0 and inst[7, 0] == -1 and inst[5, 5] == order.index(1)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    I = rng.integers(0, 25, (37, 23)).astype(np.uint8)
    U, V = rng.random((37, 23)).astype(np.float32), rng.random((37, 23)).astype(np.float32)
    s = encode_iuv_png(I, U, V)
    assert isinstance(s, str)
    I2, U2, V2 = decode_iuv_png(s)
    np.testing.assert_array_equal(I2, I)
    assert np.abs(U2 - U).max() <= 1 / 255 and np.abs(V2 - V).max() <= 1 / 255
    assert U2.dtype == np.float32 and I2.dtype == np.uint8


def test_encoding_rejects_bad_input():
    with pytest.raises(ValueError, match="equal-size"):
        encode_iuv_png(np.zeros((3, 3)), np.zeros((3, 4)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="base64"):
        decode_iuv_png("@@@")
    with pytest.raises(ValueError, match="PNG"):
        decode_iuv_png("aGVsbG8=")


def test_instances_to_results_records_round_trip():
    from detectron2.structures import Boxes, Instances

    class Charts(SimpleNamespace):
        def __len__(self):
            return len(self.coarse_segm)

    coarse, fine, u, v = _logits()
    inst = Instances((40, 50), pred_boxes=Boxes(torch.tensor([[5.0, 7.0, 13.0, 13.0]])),
                     scores=torch.tensor([0.8]), pred_classes=torch.tensor([0]))
    inst.pred_densepose = Charts(coarse_segm=coarse[None], fine_segm=fine[None], u=u[None],
                                 v=v[None])
    (rec,) = instances_to_results(inst, image_id=7, class_to_category={0: 1})
    assert rec["image_id"] == 7 and rec["category_id"] == 1 and rec["score"] == pytest.approx(0.8)
    assert rec["bbox"] == [5.0, 7.0, 8.0, 6.0] and rec["densepose"]["box_size"] == [8, 6]
    I, U, V = decode_detection_iuv(rec)
    assert np.all(I[:, :4] == 5) and np.all(np.abs(U[:, :4] - 0.3) <= 1 / 255)
    rec["densepose"]["box_size"] = [9, 6]
    with pytest.raises(DensePoseEvaluationError, match="box_size"):
        decode_detection_iuv(rec, source="results.json")
    bare = Instances((40, 50), pred_boxes=Boxes(torch.tensor([[0.0, 0.0, 1.0, 1.0]])))
    with pytest.raises(DensePoseEvaluationError, match="pred_densepose"):
        instances_to_results(bare, image_id=3, class_to_category={})
