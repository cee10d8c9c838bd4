"""Hand-checked cases of the z-buffer rasteriser (synthesis/rasterize.py)."""
import numpy as np
import pytest

from synthesis.rasterize import Camera, look_at_rotation, rasterize

F = 100.0
W = H = 16


def _camera() -> Camera:
    K = np.array([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])
    return Camera(K=K, R=np.eye(3), t=np.zeros(3), width=W, height=H)


def _unproject(uv, z):
    """World (= camera) points that project to image positions uv at depths z."""
    uv, z = np.asarray(uv, float), np.asarray(z, float)
    return np.stack([(uv[:, 0] - W / 2) / F * z, (uv[:, 1] - H / 2) / F * z, z], axis=1)


def _centres():
    ys, xs = np.mgrid[0:H, 0:W]
    return xs + 0.5, ys + 0.5


def test_single_triangle_coverage_and_barycentrics():
    # Right triangle with corners at image positions (2,2), (12,2), (2,12), tilted in depth.
    uv = [(2.0, 2.0), (12.0, 2.0), (2.0, 12.0)]
    verts = _unproject(uv, [2.0, 3.0, 4.0])
    frags = rasterize([verts], np.array([[0, 1, 2]]), _camera(), cull_backfaces=False)
    cx, cy = _centres()
    expected = (cx >= 2) & (cy >= 2) & (cx + cy <= 14)
    np.testing.assert_array_equal(frags.mesh >= 0, expected)
    assert (frags.face[expected] == 0).all() and (frags.face[~expected] == -1).all()
    assert np.isinf(frags.depth[~expected]).all()
    assert (frags.bary[~expected] == 0).all()

    b = frags.bary[expected].astype(np.float64)
    np.testing.assert_allclose(b.sum(1), 1.0, atol=1e-6)
    assert (b >= -1e-7).all()
    # Perspective-correct: the 3D point b @ verts projects back onto the pixel centre ...
    p = b @ verts
    np.testing.assert_allclose(F * p[:, 0] / p[:, 2] + W / 2, cx[expected], atol=1e-4)
    np.testing.assert_allclose(F * p[:, 1] / p[:, 2] + H / 2, cy[expected], atol=1e-4)
    # ... and its depth is the reported depth.
    np.testing.assert_allclose(frags.depth[expected], p[:, 2], rtol=1e-6)


def test_pixel_centre_sampling_of_a_known_pixel():
    # Pixel (col 5, row 3) has its centre at (5.5, 3.5): a tiny triangle around it covers it alone.
    uv = [(5.2, 3.2), (5.9, 3.2), (5.2, 3.9)]
    frags = rasterize([_unproject(uv, [1.0] * 3)], np.array([[0, 1, 2]]), _camera(), cull_backfaces=False)
    assert np.argwhere(frags.mesh >= 0).tolist() == [[3, 5]]
    # Screen barycentrics of (5.5, 3.5) w.r.t. the corners (constant depth: no perspective effect).
    np.testing.assert_allclose(frags.bary[3, 5], [1 - 0.3 / 0.7 - 0.3 / 0.7, 0.3 / 0.7, 0.3 / 0.7], atol=1e-6)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_overlapping_triangles_nearer_wins(order):
    near = _unproject([(0, 0), (0, 16), (16, 0)], [2.0] * 3)  # covers the upper-left half
    far = _unproject([(0, 0), (0, 16), (16, 16)], [5.0] * 3)  # covers the lower-left half
    meshes = [near, far]
    frags = rasterize([meshes[i] for i in order], np.array([[0, 1, 2]]), _camera())
    mesh_near, mesh_far = order.index(0), order.index(1)
    cx, cy = _centres()
    in_near = cx + cy <= 16
    in_far = cy >= cx
    assert (frags.mesh[in_near] == mesh_near).all()
    np.testing.assert_allclose(frags.depth[in_near], 2.0, rtol=1e-6)
    only_far = in_far & ~in_near
    assert only_far.any() and (frags.mesh[only_far] == mesh_far).all()
    np.testing.assert_allclose(frags.depth[only_far], 5.0, rtol=1e-6)
    assert (frags.mesh[~in_near & ~in_far] == -1).all()
    assert (frags.face[frags.mesh >= 0] == 0).all()  # face index is local to its mesh


def test_interpenetrating_planes_resolved_per_pixel():
    # Quad A tilts from depth 3 (u = -1) to depth 6 (u = 17): it crosses the constant-depth-4
    # quad B at u = 8 (1/z is linear in u), so columns 0..7 show A and columns 8..15 show B.
    corners = [(-1, -1), (17, -1), (17, 17), (-1, 17)]
    quad = np.array([[0, 2, 1], [0, 3, 2]])  # counter-clockwise as seen by the camera
    a = _unproject(corners, [3.0, 6.0, 6.0, 3.0])
    b = _unproject(corners, [4.0] * 4)
    frags = rasterize([a, b], quad, _camera())
    assert (frags.mesh[:, :8] == 0).all() and (frags.mesh[:, 8:] == 1).all()
    cx, _ = _centres()
    inv_z = 1 / 3 + (cx + 1) / 18 * (1 / 6 - 1 / 3)
    np.testing.assert_allclose(frags.depth[:, :8], 1 / inv_z[:, :8], rtol=1e-5)
    np.testing.assert_allclose(frags.depth[:, 8:], 4.0, rtol=1e-6)


def test_backface_culling_and_near_plane():
    front = _unproject([(2, 2), (2, 12), (12, 2)], [2.0] * 3)  # counter-clockwise seen by the camera
    faces = np.array([[0, 1, 2]])
    assert (rasterize([front], faces, _camera()).mesh >= 0).any()
    back = front[[0, 2, 1]]
    assert not (rasterize([back], faces, _camera()).mesh >= 0).any()
    assert (rasterize([back], faces, _camera(), cull_backfaces=False).mesh >= 0).any()
    behind = front * np.array([1.0, 1.0, -1.0])
    assert not (rasterize([behind], faces, _camera(), cull_backfaces=False).mesh >= 0).any()


def test_empty_and_offscreen():
    faces = np.array([[0, 1, 2]])
    off = _unproject([(30, 30), (30, 40), (40, 30)], [2.0] * 3)
    frags = rasterize([off], faces, _camera())
    assert frags.mesh.shape == (H, W) and (frags.mesh == -1).all()
    frags = rasterize([], faces, _camera())
    assert (frags.mesh == -1).all() and np.isinf(frags.depth).all()


def test_bad_mesh_shape_raises():
    with pytest.raises(ValueError, match="mesh 0"):
        rasterize([np.zeros((3, 2))], np.array([[0, 1, 2]]), _camera())


def test_camera_projection_and_look_at():
    R = look_at_rotation(np.array([0.3, -0.2, -1.0]))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(R), 1.0)
    centre = np.array([0.5, 1.5, 2.0])
    cam = Camera(K=_camera().K, R=R, t=-R @ centre, width=W, height=H)
    np.testing.assert_allclose(cam.center, centre, atol=1e-12)
    target = centre + 3.0 * np.array([0.3, -0.2, -1.0]) / np.linalg.norm([0.3, -0.2, -1.0])
    uv, z = cam.project(target[None])
    np.testing.assert_allclose(uv[0], [W / 2, H / 2], atol=1e-9)  # looked-at point is centred
    np.testing.assert_allclose(z, 3.0)
    up = cam.project((target + np.array([0, 0.1, 0]))[None])[0]
    assert up[0, 1] < H / 2  # world up is image up (smaller row)
