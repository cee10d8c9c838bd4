"""Multi-transform inference of R-CNN models: flips of box-frame outputs, merging, and the
wrapper against the plain model."""
import torch
from detectron2.structures import Boxes, Instances

from densepose_ext.modeling.fcn.multiscale import flip_back
from densepose_ext.modeling.test_time_augmentation import (
    DensePoseRCNNWithTTA,
    flip_keypoint_heatmaps,
    merge_densepose_runs,
)
from densepose_ext.structures import DensePoseChartOutput, DensePoseTransformData
from toys import tiny_model

KP_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # COCO person


def _chart_output(n=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DensePoseChartOutput(
        coarse_segm=torch.randn(n, 2, size, size, generator=g),
        fine_segm=torch.randn(n, 25, size, size, generator=g),
        u=torch.rand(n, 25, size, size, generator=g), v=torch.rand(n, 25, size, size, generator=g))


def test_keypoint_heatmaps_flip_mirrors_and_swaps_sides():
    maps = torch.randn(2, 17, 6, 6)
    flipped = flip_keypoint_heatmaps(maps, KP_FLIP)
    # the left eye (1) of the original is the mirrored right eye (2)
    assert torch.equal(flipped[:, 1], maps[:, 2].flip(-1))
    assert torch.equal(flipped[:, 0], maps[:, 0].flip(-1))
    assert torch.equal(flip_keypoint_heatmaps(flipped, KP_FLIP), maps)


def test_merging_a_run_with_its_mirror_gives_the_run_back():
    """A model that is exactly flip-equivariant predicts flip_back(O) on the mirrored image;
    merging it with O must give O (probabilities; U/V up to the 256-cell symmetry tables)."""
    tables = DensePoseTransformData.from_body_model()
    out = _chart_output()
    merged = merge_densepose_runs([out, flip_back(out, tables)], [False, True], tables)
    probs = torch.softmax(out.fine_segm, 1)
    torch.testing.assert_close(merged.fine_segm.exp(), probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged.coarse_segm.exp(), torch.softmax(out.coarse_segm, 1),
                               atol=1e-5, rtol=1e-5)
    # U/V of body parts (channel 0 is background and carries no chart)
    assert (merged.u[:, 1:] - out.u[:, 1:]).abs().median() < 0.01
    assert (merged.v[:, 1:] - out.v[:, 1:]).abs().median() < 0.01
    # a single unflipped run: log probabilities of the same run
    single = merge_densepose_runs([out], [False], None)
    torch.testing.assert_close(single.fine_segm, torch.log_softmax(out.fine_segm, 1))


def _tta_model(flip: bool, **overrides):
    opts = {"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0, "MODEL.MASK_ON": True,
            "MODEL.KEYPOINT_ON": True, "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": (16,),
            "MODEL.ROI_MASK_HEAD.CONV_DIM": 16, "TEST.AUG.MIN_SIZES": (128,),
            "TEST.AUG.MAX_SIZE": 128, "TEST.AUG.FLIP": flip,
            "DATASETS.TEST": ("densepose_embedded_mini",), **overrides}
    import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
    from toys import tiny_cfg

    model = tiny_model(**opts).eval()
    return model, DensePoseRCNNWithTTA(tiny_cfg(**opts), model)


def _input(seed=0):
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand(3, 128, 128, generator=g) * 255).to(torch.uint8)
    return {"image": image, "height": 128, "width": 128}


def test_single_transform_equals_the_plain_model():
    model, tta = _tta_model(flip=False)
    with torch.no_grad():
        plain = model([_input()])[0]["instances"]
        ours = tta([_input()])[0]["instances"]
    assert len(plain) == len(ours) > 0
    torch.testing.assert_close(ours.pred_boxes.tensor, plain.pred_boxes.tensor)
    torch.testing.assert_close(ours.scores, plain.scores)
    torch.testing.assert_close(ours.pred_masks.float(), plain.pred_masks.float())
    torch.testing.assert_close(ours.pred_keypoints, plain.pred_keypoints, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.pred_densepose.fine_segm.exp(),
                               torch.softmax(plain.pred_densepose.fine_segm, 1))
    torch.testing.assert_close(ours.pred_densepose.u, plain.pred_densepose.u)


def test_flip_ensemble_outputs_every_head_in_the_original_frame():
    _, tta = _tta_model(flip=True)
    with torch.no_grad():
        out = tta([_input(1)])[0]["instances"]
    n = len(out)
    assert n > 0 and out.image_size == (128, 128)
    assert tuple(out.pred_masks.shape) == (n, 128, 128)
    assert tuple(out.pred_keypoints.shape) == (n, 17, 3)
    boxes = out.pred_boxes.tensor
    kp = out.pred_keypoints
    assert ((kp[..., 0] >= boxes[:, None, 0] - 1) & (kp[..., 0] <= boxes[:, None, 2] + 1)).all()
    dp = out.pred_densepose
    assert dp.fine_segm.shape[:2] == (n, 25)
    torch.testing.assert_close(dp.fine_segm.exp().sum(1), torch.ones(dp.fine_segm.shape[0], 28, 28))
    assert tuple(dp.u.shape) == tuple(dp.v.shape) == (n, 25, 28, 28)
    assert torch.isfinite(dp.u).all() and torch.isfinite(dp.v).all()


class _EquivariantHeads(torch.nn.Module):
    """ROI heads of a toy detector that is exactly equivariant to scaling and mirroring: it
    sees one person at ``BOX`` of the 128 x 128 original, finds the image's scale from its size
    and a mirror from its content (bright right half in the original), and predicts fixed
    box-frame outputs, mirrored as a perfect model would on a mirrored image."""

    BOX = torch.tensor([[30.0, 20.0, 90.0, 110.0]])

    def __init__(self, tables):
        super().__init__()
        self.mask_on = self.keypoint_on = self.densepose_on = True
        self.tables = tables
        g = torch.Generator().manual_seed(3)
        self.mask = torch.rand(1, 1, 28, 28, generator=g)
        self.heatmaps = torch.randn(1, 17, 56, 56, generator=g)
        self.densepose = _chart_output(n=1, size=28, seed=4)

    @staticmethod
    def _mirrored(image: torch.Tensor, width: int) -> bool:
        half = width // 2
        return bool(image[..., :half].mean() > image[..., half:width].mean())

    def forward(self, images, features, proposals, targets=None):
        results = []
        for i, (h, w) in enumerate(images.image_sizes):
            box = self.BOX * (w / 128.0)
            if self._mirrored(features["image"][i, :, :h, :w], w):
                box = torch.stack([w - box[:, 2], box[:, 1], w - box[:, 0], box[:, 3]], dim=1)
            results.append(Instances((h, w), pred_boxes=Boxes(box), scores=torch.tensor([0.9]),
                                     pred_classes=torch.tensor([0])))
        return results, {}

    def forward_with_given_boxes(self, features, instances):
        for i, inst in enumerate(instances):
            h, w = inst.image_size
            if self._mirrored(features["image"][i, :, :h, :w], w):
                inst.pred_masks = self.mask.flip(-1)
                inst.pred_keypoint_heatmaps = flip_keypoint_heatmaps(self.heatmaps, KP_FLIP)
                inst.pred_densepose = flip_back(self.densepose, self.tables)
            else:
                inst.pred_masks = self.mask
                inst.pred_keypoint_heatmaps = self.heatmaps
                inst.pred_densepose = self.densepose
        return instances


class _ImageFeatures(torch.nn.Module):
    """Backbone of the toy: the normalised image itself is the only feature map."""

    size_divisibility = 32
    padding_constraints = {}

    def forward(self, x):
        return {"image": x}


class _NoProposals(torch.nn.Module):
    """The toy detects without proposals."""

    def forward(self, images, features, targets=None):
        return None, {}


def test_flip_and_scale_ensemble_of_an_equivariant_model_returns_its_outputs():
    """Scales (96, 128, 160) and their mirrors: every transform predicts the same person, so
    the ensemble must give back the plain outputs: the box, the pasted mask, the keypoints and
    the DensePose probabilities exactly; U/V up to the 256-cell symmetry tables."""
    from detectron2.modeling.postprocessing import detector_postprocess
    from detectron2.modeling.roi_heads.keypoint_head import heatmaps_to_keypoints

    tables = DensePoseTransformData.from_body_model()
    model, tta = _tta_model(flip=True, **{"TEST.AUG.MIN_SIZES": (96, 128, 160),
                                          "TEST.AUG.MAX_SIZE": 160})
    heads = _EquivariantHeads(tables)
    model.backbone = _ImageFeatures()
    model.proposal_generator = _NoProposals()
    model.roi_heads = heads
    tta._transform_data = tables
    image = torch.zeros(3, 128, 128, dtype=torch.uint8)
    image[:, :, 64:] = 200  # bright right half: the toy tells a mirrored image by it
    with torch.no_grad():
        out = tta([{"image": image, "height": 128, "width": 128}])[0]["instances"]
    assert len(out) == 1 and len(tta._get_augmented_inputs({"image": image, "height": 128,
                                                            "width": 128})[1]) == 6
    torch.testing.assert_close(out.pred_boxes.tensor, heads.BOX, atol=1e-4, rtol=0)
    expected = Instances((128, 128), pred_boxes=Boxes(heads.BOX.clone()),
                         pred_masks=heads.mask.clone())
    expected = detector_postprocess(expected, 128, 128)
    assert torch.equal(out.pred_masks, expected.pred_masks)
    torch.testing.assert_close(out.pred_keypoint_heatmaps, heads.heatmaps)
    keypoints = heatmaps_to_keypoints(heads.heatmaps, heads.BOX)[:, :, [0, 1, 3]]
    torch.testing.assert_close(out.pred_keypoints, keypoints, atol=1e-3, rtol=1e-4)
    dp, plain = out.pred_densepose, heads.densepose
    torch.testing.assert_close(dp.fine_segm.exp(), torch.softmax(plain.fine_segm, 1))
    torch.testing.assert_close(dp.coarse_segm.exp(), torch.softmax(plain.coarse_segm, 1))
    assert (dp.u[:, 1:] - plain.u[:, 1:]).abs().median() < 0.01
    assert (dp.v[:, 1:] - plain.v[:, 1:]).abs().median() < 0.01
