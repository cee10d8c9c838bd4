"""3D pose sources: .npz sequences (round trip, clear errors), procedural motions within the
joint limits, their training / held-out split, random poses, posing through smplx into SMPL
joints and COCO keypoints."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES
from densepose_ext.body.pose import JOINT_LIMITS, JOINT_NAMES, pose_to_euler
from synthesis.motions import (MOTIONS, SAME_POSE_DEG, TEST_MOTIONS, TRAIN_MOTIONS,
                               held_out_sequences, motion_sequence, pose_distance_deg,
                               write_motion_set)
from synthesis.pose_sequences import (PoseSequence, PoseSourceError, estimate_up_axis,
                                      load_pose_npz, save_pose_npz)
from synthesis.pose_sources import (POSE_SOURCES, RandomPoseSource, SequencePoseSource,
                                    resolve_pose_source, shared_frames)
from synthesis.smpl_poser import SMPLPoser


@pytest.fixture(scope="module")
def poser():
    return SMPLPoser()


def test_npz_round_trip(tmp_path):
    seq = motion_sequence("walk")
    seq.betas = np.linspace(-1, 1, 10)
    back = load_pose_npz(save_pose_npz(seq, tmp_path / "walk.npz"))
    np.testing.assert_array_equal(back.poses, seq.poses)
    np.testing.assert_array_equal(back.trans, seq.trans)
    np.testing.assert_array_equal(back.betas, seq.betas)
    assert back.fps == seq.fps and back.name == "walk"
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


def test_npz_with_more_columns_and_betas(tmp_path):
    """MoCap archives store hand joints after the 72 body values and 16 shape values."""
    rng = np.random.default_rng(0)
    poses = rng.normal(0, 0.1, (5, 156))
    np.savez(tmp_path / "amass.npz", poses=poses, trans=np.zeros((5, 3)), betas=np.ones(16), mocap_framerate=120.0)
    seq = load_pose_npz(tmp_path / "amass.npz")
    np.testing.assert_array_equal(seq.poses, poses[:, :72])
    assert seq.betas.shape == (16,) and seq.fps == 120.0


@pytest.mark.parametrize("arrays, message", [
    ({"trans": np.zeros((3, 3))}, "missing array(s) poses"),
    ({"poses": np.zeros((3, 60)), "trans": np.zeros((3, 3))}, "'poses' must be"),
    ({"poses": np.zeros((3, 72)), "trans": np.zeros((4, 3))}, "'trans' must be (3, 3)"),
    ({"poses": np.full((3, 72), np.nan), "trans": np.zeros((3, 3))}, "non-finite"),
    ({"poses": np.zeros((0, 72)), "trans": np.zeros((0, 3))}, "no frames"),
])
def test_bad_npz_names_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(PoseSourceError) as e:
        load_pose_npz(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_unreadable_npz_names_the_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(PoseSourceError, match="garbage.npz"):
        load_pose_npz(path)
    with pytest.raises(PoseSourceError, match="missing.npz"):
        load_pose_npz(tmp_path / "missing.npz")


@pytest.mark.parametrize("name", sorted(MOTIONS))
def test_motions_are_smooth_and_within_limits(name):
    seq = motion_sequence(name)
    assert len(seq) >= 30 and seq.poses.shape[1] == 72
    euler = pose_to_euler(seq.poses)
    lo, hi = JOINT_LIMITS[None, 1:, :, 0], JOINT_LIMITS[None, 1:, :, 1]
    assert (euler[:, 1:] >= lo - 1e-6).all() and (euler[:, 1:] <= hi + 1e-6).all()
    step = np.abs(np.diff(euler[:, 1:], axis=0)).max()
    assert step < 0.5, f"{name}: a joint turns {step:.2f} rad between frames (> 15 rad/s at 30 fps)"
    assert np.ptp(euler[:, 1:], axis=0).max() > 0.2  # it actually moves


def test_write_motion_set(tmp_path):
    paths = write_motion_set(tmp_path, ["walk", "sit"])
    assert [p.name for p in paths] == ["walk.npz", "sit.npz"]
    src = resolve_pose_source(tmp_path)  # a directory of sequences
    assert isinstance(src, SequencePoseSource) and src.num_frames == len(motion_sequence("walk")) + len(
        motion_sequence("sit"))


def test_resolve_names_and_errors(tmp_path):
    assert set(MOTIONS) < set(POSE_SOURCES)
    assert {"motions", "motions_train", "motions_test", "random"} < set(POSE_SOURCES)
    assert resolve_pose_source(None).describe() == resolve_pose_source("motions").describe()
    assert isinstance(resolve_pose_source("random"), RandomPoseSource)
    with pytest.raises(PoseSourceError, match="no_such_thing"):
        resolve_pose_source("no_such_thing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoseSourceError, match="no .npz"):
        resolve_pose_source(tmp_path / "empty")


def test_pose_distance_is_the_largest_joint_rotation():
    a = np.zeros((1, 72))
    b = np.zeros((2, 72))
    b[0, 3 * JOINT_NAMES.index("left_knee")] = np.deg2rad(30.0)  # one joint turned 30 degrees
    b[1, 3 * JOINT_NAMES.index("left_knee") + 1] = np.deg2rad(20.0)
    b[1, 3 * JOINT_NAMES.index("neck") + 2] = np.deg2rad(-45.0)
    b[:, :3] = 1.0  # the root orientation does not count
    np.testing.assert_allclose(pose_distance_deg(a, b), [[30.0, 45.0]], atol=1e-6)


def test_motion_split_holds_out_actions_and_frames():
    train, test = resolve_pose_source("motions_train"), resolve_pose_source("motions_test")
    assert [s.name for s in train.sequences] == list(TRAIN_MOTIONS)
    assert [s.name for s in test.sequences] == list(TEST_MOTIONS)
    assert not set(TRAIN_MOTIONS) & set(TEST_MOTIONS) and set(TRAIN_MOTIONS) | set(TEST_MOTIONS) == set(MOTIONS)
    assert train.num_frames == sum(len(motion_sequence(n)) for n in TRAIN_MOTIONS)
    # squat starts standing, as sit and bend do: those frames are not held out
    squat = motion_sequence("squat")
    assert pose_distance_deg(squat.poses[:1], motion_sequence("sit").poses[:1])[0, 0] < 1e-3
    kept = next(s for s in test.sequences if s.name == "squat")
    assert 0 < len(kept) < len(squat) and 0 not in kept.frame_ids
    np.testing.assert_array_equal(kept.poses, squat.poses[kept.frame_ids])  # frames keep their number
    assert all(len(s) == len(motion_sequence(s.name)) for s in test.sequences if s.name != "squat")
    # no held-out frame is within SAME_POSE_DEG of a training frame; all of motions overlaps
    assert shared_frames(test, train) == [] and shared_frames(train, test) == []
    test_poses, test_tags = test.frames()
    train_poses, _ = train.frames()
    assert pose_distance_deg(test_poses, train_poses).min() >= SAME_POSE_DEG
    everything = shared_frames(resolve_pose_source("motions"), train)
    assert len(everything) == train.num_frames + len(squat) - len(kept)
    # sampled tags name the original frame
    tags = {test.sample(np.random.default_rng(i)).tag for i in range(50)}
    assert tags <= set(test_tags) and all(t.split(":")[0] in TEST_MOTIONS for t in tags)
    with pytest.raises(PoseSourceError, match="'walk': every frame repeats a training pose"):
        held_out_sequences([motion_sequence("walk")], [motion_sequence("walk")])


def test_sources_are_deterministic_per_generator():
    for name in ("motions", "motions_test", "random"):
        src = resolve_pose_source(name)
        a = src.sample(np.random.default_rng([3, 4]))
        b = src.sample(np.random.default_rng([3, 4]))
        np.testing.assert_array_equal(a.pose, b.pose)
        assert a.tag == b.tag
    q = RandomPoseSource().sample(np.random.default_rng(1))
    euler = pose_to_euler(q.pose[None])[0, 1:]
    assert (euler >= JOINT_LIMITS[1:, :, 0] - 1e-6).all() and (euler <= JOINT_LIMITS[1:, :, 1] + 1e-6).all()


def test_up_axis_of_a_z_up_archive():
    seq = motion_sequence("walk")
    assert np.allclose(estimate_up_axis(seq.poses), [0, 1, 0])
    to_z_up = Rotation.from_euler("x", 90, degrees=True)  # body +y -> world +z
    poses = seq.poses.copy()
    poses[:, :3] = (to_z_up * Rotation.from_rotvec(poses[:, :3])).as_rotvec()
    assert np.allclose(estimate_up_axis(poses), [0, 0, 1])


def test_posing_gives_joints_and_coco_keypoints(poser):
    seq = motion_sequence("squat")
    bodies = poser.pose_sequence(PoseSequence(seq.poses[:6], seq.trans[:6] + [0.0, 0.0, 2.0], None))
    assert bodies.joints.shape == (6, 24, 3) and bodies.keypoints.shape == (6, 17, 3)
    # COCO shoulders/elbows/knees are the SMPL joints themselves
    for name in ("left_shoulder", "right_elbow", "left_knee", "right_ankle"):
        np.testing.assert_allclose(bodies.keypoints[:, COCO_KEYPOINT_NAMES.index(name)],
                                   bodies.joints[:, JOINT_NAMES.index(name)])
    # translation moves everything rigidly
    moved = poser.pose(seq.poses[:1], seq.trans[:1] + [0.0, 0.0, 3.0])
    np.testing.assert_allclose(moved.joints[0] - bodies.joints[0], np.tile([0, 0, 1.0], (24, 1)), atol=1e-9)
    # a squat brings the pelvis closer to the ankles than standing does
    stand = poser.pose(np.zeros((1, 72)))
    h = lambda b, i: b.joints[i, 0, 1] - b.joints[i, [7, 8], 1].mean()  # noqa: E731
    deepest = int(np.argmax(np.abs(pose_to_euler(seq.poses)[:, 4, 0])))
    deep = poser.pose(seq.poses[deepest:deepest + 1])
    assert h(deep, 0) < 0.8 * h(stand, 0)


def test_missing_smpl_model_is_a_clear_error(tmp_path):
    with pytest.raises(PoseSourceError, match="SMPL model file not found"):
        SMPLPoser(tmp_path / "SMPL_NEUTRAL.pkl")
