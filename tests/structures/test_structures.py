"""DensePose structures: flip semantics, flip twice = identity, DensePoseList indexing,
symmetry-table file round trip."""
import numpy as np
import pytest
import scipy.io
import torch
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from densepose_ext.structures import (
    COARSE_PART_HFLIP,
    FINE_PART_HFLIP,
    DensePoseData,
    DensePoseList,
    DensePoseTransformData,
    DensePoseTransformDataError,
)
from toys import toy_transform_data


def random_data(n=50, seed=0, dyadic=False) -> DensePoseData:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g) * 256
    y = torch.rand(n, generator=g) * 256
    if dyadic:  # multiples of 1/8: 256 - x is exact in float32
        x, y = torch.round(x * 8) / 8, torch.round(y * 8) / 8
    segm = torch.randint(0, 15, (256, 256), generator=g, dtype=torch.uint8)
    return DensePoseData(
        x, y, torch.randint(1, 25, (n,), generator=g), torch.rand(n, generator=g),
        torch.rand(n, generator=g), segm,
    )


def test_flip_semantics():
    td = toy_transform_data()
    d = DensePoseData(
        torch.tensor([10.0, 200.0]), torch.tensor([5.0, 6.0]), torch.tensor([3, 15]),
        torch.tensor([0.2, 0.9]), torch.tensor([0.4, 0.1]),
        torch.zeros(256, 256, dtype=torch.uint8),
    )
    d.segm[:, :10] = 2  # right hand at the left of the frame
    f = d.apply_transform(T.TransformList([T.HFlipTransform(100)]), td)
    assert torch.equal(f.x, torch.tensor([246.0, 56.0])) and torch.equal(f.y, d.y)
    assert f.i.tolist() == [4, 16]  # right hand -> left hand, upper arm left -> right
    assert torch.allclose(f.u, 1 - d.u, atol=1 / 255) and torch.allclose(f.v, d.v, atol=1 / 255)
    assert (f.segm[:, 246:] == 3).all() and (f.segm[:, :246] == 0).all()
    assert d.x[0] == 10.0  # the input is not modified


def test_flip_twice_is_identity():
    td = toy_transform_data()
    for dyadic in (True, False):
        d = random_data(dyadic=dyadic)
        flip = T.TransformList([T.HFlipTransform(640)])
        ff = d.apply_transform(flip, td).apply_transform(flip, td)
        assert torch.equal(ff.i, d.i) and torch.equal(ff.y, d.y) and torch.equal(ff.segm, d.segm)
        if dyadic:
            assert torch.equal(ff.x, d.x)
        else:  # exact up to float32 rounding of 256 - x
            assert torch.allclose(ff.x, d.x, atol=3e-5, rtol=0)
        assert (ff.u - d.u).abs().max() <= 2 / 255 and (ff.v - d.v).abs().max() <= 2 / 255
    # two flips in one list cancel without touching the tables
    d = random_data()
    assert d.apply_transform([T.HFlipTransform(10), T.HFlipTransform(10)], None) is d


def test_resize_keeps_box_relative_data_and_crop_is_refused():
    d = random_data()
    r = d.apply_transform(T.TransformList([T.ResizeTransform(64, 80, 128, 160)]), None)
    assert r is d
    with pytest.raises(NotImplementedError, match="CropTransform"):
        d.apply_transform(T.TransformList([T.CropTransform(0, 0, 10, 10)]), None)
    with pytest.raises(ValueError, match="needs DensePoseTransformData"):
        d.apply_transform(T.HFlipTransform(10), None)


def test_label_permutations_are_involutions():
    fine, coarse = np.array(FINE_PART_HFLIP), np.array(COARSE_PART_HFLIP)
    assert (fine[fine] == np.arange(25)).all() and (coarse[coarse] == np.arange(15)).all()
    assert fine[3] == 4 and fine[7] == 8 and fine[23] == 24 and coarse[6] == 7 and coarse[14] == 14


def test_flip_iuv_numpy_and_torch_agree():
    td = toy_transform_data()
    i = np.array([0, 1, 3, 24])
    u = np.array([0.3, 0.0, 1.0, 0.5], dtype=np.float32)
    v = np.array([0.3, 0.25, 1.0, 0.5], dtype=np.float32)
    ni, nu, nv = td.flip_iuv(i, u, v)
    ti, tu, tv = td.flip_iuv(torch.from_numpy(i), torch.from_numpy(u), torch.from_numpy(v))
    assert isinstance(ni, np.ndarray) and isinstance(ti, torch.Tensor)
    assert ni.tolist() == ti.tolist() == [0, 1, 4, 23]
    assert np.allclose(nu, tu.numpy()) and np.allclose(nv, tv.numpy())
    assert nu[0] == pytest.approx(0.3) and nv[0] == pytest.approx(0.3)  # background untouched
    # lookup convention: u_loc = int(u*255), v_loc = int(v*255), table[part-1][v_loc, u_loc]
    assert nu[1] == pytest.approx(1 - 0.5 / 255) and nv[1] == pytest.approx((63 + 0.5) / 255)


def test_from_mat_round_trip_and_errors(tmp_path):
    pytest.importorskip("densepose_ext.body.official_formats")
    td = toy_transform_data()
    u = td.uv_symmetries["U_transforms"].numpy()
    v = td.uv_symmetries["V_transforms"].numpy()
    cells_u = np.empty((1, 24), dtype=object)
    cells_v = np.empty((1, 24), dtype=object)
    for k in range(24):
        cells_u[0, k], cells_v[0, k] = u[k], v[k]
    path = tmp_path / "UV_symmetry_transforms.mat"
    scipy.io.savemat(path, {"U_transforms": cells_u, "V_transforms": cells_v})
    back = DensePoseTransformData.from_mat(path)
    assert torch.equal(back.uv_symmetries["U_transforms"], td.uv_symmetries["U_transforms"])
    assert torch.equal(back.uv_symmetries["V_transforms"], td.uv_symmetries["V_transforms"])

    scipy.io.savemat(tmp_path / "missing.mat", {"U_transforms": cells_u})
    expected = r"missing.mat, key 'V_transforms': missing"
    with pytest.raises(DensePoseTransformDataError, match=expected):
        DensePoseTransformData.from_mat(tmp_path / "missing.mat")
    short = cells_u[:, :23]
    scipy.io.savemat(tmp_path / "short.mat", {"U_transforms": short, "V_transforms": cells_v})
    with pytest.raises(DensePoseTransformDataError, match=r"short.mat, key 'U_transforms'"):
        DensePoseTransformData.from_mat(tmp_path / "short.mat")
    small = np.empty((1, 24), dtype=object)
    for k in range(24):
        small[0, k] = np.zeros((8, 8))
    scipy.io.savemat(tmp_path / "small.mat", {"U_transforms": small, "V_transforms": small})
    with pytest.raises(DensePoseTransformDataError, match=r"small.mat: U_transforms must hold 24"):
        DensePoseTransformData.from_mat(tmp_path / "small.mat")


def test_validate():
    d = random_data()
    d.validate()
    with pytest.raises(ValueError, match=r"DensePoseData.u outside"):
        DensePoseData(d.x, d.y, d.i, d.u + 2, d.v).validate()
    with pytest.raises(ValueError, match=r"DensePoseData.i has shape"):
        DensePoseData(d.x, d.y, d.i[:3], d.u, d.v).validate()


def test_densepose_list_indexing():
    items = [random_data(seed=k) for k in range(4)]
    items[2] = None
    lst = DensePoseList(items)
    assert len(lst) == 4 and lst[0] is items[0] and lst[2] is None and lst[-1] is items[3]
    assert lst.is_annotated.tolist() == [True, True, False, True]
    assert [x is y for x, y in zip(lst[1:3], items[1:3])] == [True, True]
    sel = lst[torch.tensor([True, False, True, True])]
    assert isinstance(sel, DensePoseList) and list(sel) == [items[0], None, items[3]]
    assert list(lst[torch.tensor([3, 0])]) == [items[3], items[0]]
    assert lst[torch.tensor(1)] is items[1]
    with pytest.raises(IndexError):
        lst[torch.tensor([True, False])]
    moved = lst.to("cpu")
    assert moved[0].x.device.type == "cpu" and moved[2] is None


def test_densepose_list_inside_instances():
    items = [random_data(seed=k) for k in range(3)]
    inst = Instances((100, 100))
    inst.gt_boxes = Boxes(torch.tensor([[0, 0, 10, 10], [0, 0, 0, 0], [5, 5, 20, 20]]).float())
    inst.gt_densepose = DensePoseList([items[0], None, items[2]])
    kept = inst[inst.gt_boxes.nonempty()]
    assert len(kept) == 2 and list(kept.gt_densepose) == [items[0], items[2]]
    both = Instances.cat([inst, kept])
    assert len(both.gt_densepose) == 5 and both.gt_densepose[4] is items[2]
    assert inst[1].gt_densepose[0] is None


def test_body_model_tables_flip_twice():
    """With the embedded body's tables, flip twice returns the labels exactly and U/V of
    points ON the body surface within the 256-grid error of the tables."""
    pytest.importorskip("densepose_ext.body.body_model")
    from densepose_ext.body.body_model import get_body_model

    body = get_body_model()
    td = DensePoseTransformData.from_body_model(body)
    rng = np.random.default_rng(0)
    n = 2000
    faces = rng.integers(0, len(body.faces), n)
    bary = rng.dirichlet(np.ones(3), n)
    i, u, v = body.surface_to_iuv(faces, bary)
    d = DensePoseData(torch.rand(n) * 256, torch.rand(n) * 256, torch.from_numpy(i),
                      torch.from_numpy(u), torch.from_numpy(v))
    flip = T.HFlipTransform(100)
    ff = d.apply_transform(flip, td).apply_transform(flip, td)
    assert torch.equal(ff.i, d.i)
    err = torch.maximum((ff.u - d.u).abs(), (ff.v - d.v).abs())
    print(f"body-model flip twice: U/V error median {err.median():.4f}, "
          f"p95 {err.quantile(0.95):.4f}, max {err.max():.4f}")
    assert err.median() < 0.01 and err.quantile(0.95) < 0.03
