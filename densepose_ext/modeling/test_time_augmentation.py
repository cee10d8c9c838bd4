"""Multi-transform inference for R-CNN models: DensePose, mask and keypoint heads (and the
cascade), over the scales and flips of detectron2's ``TEST.AUG`` keys.

Every transformed image is run once for boxes; the boxes of all transforms, mapped back to the
original image, are merged by NMS (detectron2's ``GeneralizedRCNNWithTTA``). The heads then run
on the merged boxes in every transformed image, and their box-frame outputs are mapped back
and averaged: mask probabilities (mirrored under a flip), keypoint heatmaps (mirrored, left and
right keypoints swapped) and DensePose (part probabilities mirrored with the part permutation,
U/V through the body's flip symmetry tables; see :func:`flip_back`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import create_keypoint_hflip_indices
from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.roi_heads.keypoint_head import heatmaps_to_keypoints
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA, GeneralizedRCNNWithTTA
from detectron2.structures import Instances
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..structures import DensePoseChartOutput, DensePoseTransformData
from .fcn.meta_arch import transform_data_loader
from .fcn.multiscale import flip_back, merge_predictions, to_log_probs

__all__ = ["DensePoseRCNNWithTTA", "flip_keypoint_heatmaps", "merge_densepose_runs"]

#: ROI-head switches turned off while boxes are detected (the heads run on merged boxes)
_HEAD_SWITCHES = ("mask_on", "keypoint_on", "densepose_on")


def _is_flip(tfm) -> bool:
    return any(isinstance(t, HFlipTransform) for t in tfm.transforms)


def flip_keypoint_heatmaps(heatmaps: torch.Tensor, flip_indices: Sequence[int]) -> torch.Tensor:
    """(N, K, S, S) box-frame heatmaps of a mirrored image -> those of the original image:
    mirrored, and keypoint k read from the channel of its mirror keypoint."""
    index = torch.as_tensor(list(flip_indices), dtype=torch.long, device=heatmaps.device)
    return heatmaps.flip(-1)[:, index]


def merge_densepose_runs(runs: Sequence[DensePoseChartOutput], flipped: Sequence[bool],
                         transform_data: Optional[DensePoseTransformData]
                         ) -> DensePoseChartOutput:
    """Box-frame DensePose outputs of one set of boxes under several transforms -> one output:
    coarse / fine log(mean probability), mean U / V, after mapping the flipped runs back."""
    outs = []
    for run, flip in zip(runs, flipped):
        run = to_log_probs(run)
        if flip:
            if transform_data is None:
                raise ValueError("flipped DensePose outputs need the body's flip tables")
            run = flip_back(run, transform_data)
        outs.append(run)
    return merge_predictions(outs)


class DensePoseRCNNWithTTA(GeneralizedRCNNWithTTA):
    """A GeneralizedRCNN with DensePose / mask / keypoint heads under multi-transform inference.

    Called like the model in inference (list of dataset dicts with "image" or "file_name") and
    returns ``[{"instances": ...}]`` in the original image's coordinates, with the fields of
    the enabled heads: ``pred_masks``, ``pred_keypoints`` (+ ``pred_keypoint_heatmaps``) and
    ``pred_densepose`` (coarse and fine segmentation as log probabilities).
    """

    def __init__(self, cfg, model: GeneralizedRCNN, transform_data: Optional[
            DensePoseTransformData] = None, tta_mapper=None, batch_size: int = 3):
        """
        Args:
            cfg: the model's config; ``TEST.AUG.{MIN_SIZES, MAX_SIZE, FLIP}`` give the
                transforms, ``DATASETS.TEST`` the keypoint flip map.
            model: the trained model (a DDP wrapper is unwrapped).
            transform_data: DensePose flip tables; default: ``DENSEPOSE_DATA_DIR``'s or those
                of the test dataset's body model, loaded on the first flip.
        """
        nn.Module.__init__(self)  # the parent's constructor refuses keypoint heads
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not isinstance(model, GeneralizedRCNN):
            raise TypeError(f"multi-transform inference needs a GeneralizedRCNN, got "
                            f"{type(model).__name__}")
        if cfg.MODEL.LOAD_PROPOSALS:
            raise ValueError("multi-transform inference does not support MODEL.LOAD_PROPOSALS")
        self.cfg = cfg.clone()
        self.model = model
        self.tta_mapper = tta_mapper if tta_mapper is not None else DatasetMapperTTA(cfg)
        self.batch_size = batch_size
        self._transform_data = transform_data
        self.keypoint_flip_indices = None
        if cfg.MODEL.KEYPOINT_ON:
            names = cfg.DATASETS.TEST or cfg.DATASETS.TRAIN
            if not MetadataCatalog.get(names[0]).get("keypoint_flip_map"):
                raise ValueError(f"dataset {names[0]!r} has no keypoint_flip_map for flips")
            self.keypoint_flip_indices = create_keypoint_hflip_indices(names[:1])

    def _batch_inference(self, batched_inputs, detected_instances=None):
        """detectron2's batched inference (chunks of ``batch_size``, not post-processed), with
        the backbone run once per chunk: the box pass keeps each chunk's features and the head
        pass on the same inputs (given boxes) reuses them, instead of recomputing them."""
        model = self.model
        cached = getattr(self, "_chunk_features", None)
        reuse = (detected_instances is not None and cached is not None
                 and cached[0] is batched_inputs)
        if detected_instances is None:
            self._chunk_features = (batched_inputs, [])
        outputs = []
        for k, start in enumerate(range(0, len(batched_inputs), self.batch_size)):
            inputs = batched_inputs[start:start + self.batch_size]
            if reuse:
                features = cached[1][k]
            else:
                images = model.preprocess_image(inputs)
                features = model.backbone(images.tensor)
            if detected_instances is None:
                self._chunk_features[1].append(features)
                proposals, _ = model.proposal_generator(images, features, None)
                results, _ = model.roi_heads(images, features, proposals, None)
            else:
                boxes = detected_instances[start:start + self.batch_size]
                results = model.roi_heads.forward_with_given_boxes(
                    features, [x.to(model.device) for x in boxes])
            outputs.extend(results)
        if detected_instances is not None and reuse:
            self._chunk_features = None  # one head pass per box pass
        return outputs

    @property
    def transform_data(self) -> DensePoseTransformData:
        if self._transform_data is None:
            self._transform_data = transform_data_loader(self.cfg)()
        return self._transform_data

    def _inference_one_image(self, input: dict) -> dict:
        orig_shape = (input["height"], input["width"])
        augmented_inputs, tfms = self._get_augmented_inputs(input)
        with self._turn_off_roi_heads(_HEAD_SWITCHES):
            boxes, scores, classes = self._get_augmented_boxes(augmented_inputs, tfms)
        merged = self._merge_detections(boxes, scores, classes, orig_shape)
        heads = {name: getattr(self.model.roi_heads, name, False) for name in _HEAD_SWITCHES}
        if len(merged) and any(heads.values()):
            outputs = self._batch_inference(
                augmented_inputs, self._rescale_detected_boxes(augmented_inputs, merged, tfms))
            flipped = [_is_flip(t) for t in tfms]
            if heads["mask_on"]:
                merged.pred_masks = self._reduce_pred_masks(outputs, tfms)
            if heads["keypoint_on"]:
                self._merge_keypoints(merged, outputs, flipped)
            if heads["densepose_on"]:
                merged.pred_densepose = merge_densepose_runs(
                    [o.pred_densepose for o in outputs], flipped,
                    self.transform_data if any(flipped) else None)
        elif any(heads.values()):
            merged = self._empty_head_outputs(augmented_inputs[0], merged)
        self._chunk_features = None
        return {"instances": detector_postprocess(merged, *orig_shape)}

    def _merge_keypoints(self, merged: Instances, outputs: List[Instances],
                         flipped: List[bool]) -> None:
        maps = [flip_keypoint_heatmaps(o.pred_keypoint_heatmaps, self.keypoint_flip_indices)
                if flip else o.pred_keypoint_heatmaps for o, flip in zip(outputs, flipped)]
        heatmaps = torch.stack(maps).mean(dim=0)
        # (x, y, logit, score) per keypoint of the merged boxes, as the keypoint head returns
        keypoints = heatmaps_to_keypoints(heatmaps, merged.pred_boxes.tensor.detach())
        merged.pred_keypoints = keypoints[:, :, [0, 1, 3]]
        merged.pred_keypoint_heatmaps = heatmaps

    def _empty_head_outputs(self, augmented_input: dict, merged: Instances) -> Instances:
        """No detection: the heads' fields with zero rows, from one run on no boxes."""
        empty = Instances(augmented_input["image"].shape[1:3], pred_boxes=merged.pred_boxes,
                          scores=merged.scores, pred_classes=merged.pred_classes)
        out = self._batch_inference([augmented_input], [empty])[0]
        return Instances(merged.image_size, **out.get_fields())

