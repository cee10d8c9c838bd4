"""``DensePoseFCN``: the fully convolutional (non-regional) DensePose baseline.

A backbone (FPN) and :class:`DensePoseFCNHead` predict DensePose for every pixel; training
uses the sparse points of every GT person and a person / background segmentation
(:class:`DensePoseFCNLoss`). Inference turns the per-pixel maps into person instances with the
fields the R-CNN gives (pred_boxes, scores, pred_classes, pred_densepose), so the DensePose
evaluator, the visualisers and tools/apply_net.py work unchanged; or, as
``GeneralizedRCNN.inference``, predicts DensePose inside given boxes.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from densepose_ext.body.official_formats import UV_SYMMETRY
from densepose_ext.data import build_transform_data_loader
from densepose_ext.structures import DensePoseChartOutput, DensePoseTransformData

from ..unsupported import check_supported_config
from .crop_inference import person_crop_inference
from .head import DensePoseFCNHead, upsample_maps
from .instances import crop_maps_to_boxes, person_components
from .losses import DensePoseFCNLoss
from .multiscale import (flip_back, merge_predictions, resize_image, resize_maps, scaled_size,
                         to_log_probs)

__all__ = ["DensePoseFCN"]

TransformDataSource = Union[DensePoseTransformData, Callable[[], DensePoseTransformData], None]


def transform_data_loader(cfg: CfgNode) -> Callable[[], DensePoseTransformData]:
    """Loader of the flip tables for flip testing (the FCN's and the R-CNN's multi-transform
    inference): DENSEPOSE_DATA_DIR's official file, else
    the tables of the test (or training) dataset's body model, as the dataset mapper does."""
    if cfg.DENSEPOSE_DATA_DIR:
        return functools.partial(
            DensePoseTransformData.from_mat, os.path.join(cfg.DENSEPOSE_DATA_DIR, UV_SYMMETRY)
        )
    names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
    if names:
        return build_transform_data_loader(names[0])
    return DensePoseTransformData.from_body_model


@META_ARCH_REGISTRY.register()
class DensePoseFCN(nn.Module):
    """Fully convolutional DensePose: per-pixel part labels, U, V and person segmentation.

    Inputs are detectron2's list of dicts ("image", optional "instances", "height", "width").
    Training returns the losses ``loss_densepose_{I,U,V,S}``; inference returns
    ``[{"instances": Instances}]`` in the original image size (see :meth:`inference`).
    Inputs carrying ``"person_crops"`` (single-person evaluation,
    :class:`densepose_ext.data.PersonCropMapper`) are predicted crop by crop with their GT
    boxes given, see :func:`person_crop_inference`.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: DensePoseFCNHead,
        loss: DensePoseFCNLoss,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        heatmap_size: int = 112,
        min_area: int = 64,
        max_detections: int = 100,
        test_min_sizes: Sequence[int] = (),
        test_max_size: int = 1333,
        test_flip: bool = False,
        transform_data: TransformDataSource = None,
    ):
        """
        Args:
            backbone / head / loss: the network and its training losses.
            pixel_mean / pixel_std: input normalisation, per channel.
            heatmap_size: side S of each instance's pred_densepose grid.
            min_area: smallest person component kept at inference (input pixels).
            max_detections: most instances returned per image.
            test_min_sizes / test_max_size / test_flip: multi-scale / flip testing; no
                scales and no flip = a single run at the input size.
            transform_data: flip tables, or a zero-argument loader of them (flip testing).
        """
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.loss = loss
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.heatmap_size = int(heatmap_size)
        self.min_area = int(min_area)
        self.max_detections = int(max_detections)
        self.test_min_sizes = tuple(int(s) for s in test_min_sizes)
        self.test_max_size = int(test_max_size)
        self.test_flip = bool(test_flip)
        if self.test_flip and transform_data is None:
            raise ValueError("flip testing needs the DensePose flip tables (transform_data)")
        self._transform_data = transform_data

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        check_supported_config(cfg)  # upstream-only options (confidences, CSE, ...) refused
        backbone = build_backbone(cfg)
        fcn = cfg.MODEL.DENSEPOSE_FCN
        aug = fcn.TEST_AUG
        return {
            "backbone": backbone,
            "head": DensePoseFCNHead.from_config(cfg, backbone.output_shape()),
            "loss": DensePoseFCNLoss.from_config(cfg),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "heatmap_size": fcn.HEATMAP_SIZE,
            "min_area": fcn.MIN_AREA,
            "max_detections": cfg.TEST.DETECTIONS_PER_IMAGE,
            "test_min_sizes": aug.MIN_SIZES if aug.ENABLED else (),
            "test_max_size": aug.MAX_SIZE,
            "test_flip": bool(aug.ENABLED and aug.FLIP),
            "transform_data": transform_data_loader(cfg) if aug.ENABLED and aug.FLIP else None,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def transform_data(self) -> Optional[DensePoseTransformData]:
        """The flip tables on the model's device (loaded on first use)."""
        td = self._transform_data
        if td is not None and not isinstance(td, DensePoseTransformData):
            td = td()
        if td is not None and td.device != self.device:
            td = td.to(self.device)
        self._transform_data = td
        return td

    # ------------------------------------------------------------------------------- network
    def _normalize(self, images: Sequence[torch.Tensor]) -> ImageList:
        images = [(x.to(self.device).float() - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def preprocess_image(self, batched_inputs: List[dict]) -> ImageList:
        """Normalised, padded batch of the inputs' images."""
        return self._normalize([x["image"] for x in batched_inputs])

    def predict_maps(self, images: ImageList) -> DensePoseChartOutput:
        """Raw per-pixel outputs (logits and U, V) on the padded grid of ``images``."""
        maps = self.head(self.backbone(images.tensor))
        return upsample_maps(maps, images.tensor.shape[-2:])

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            if any("person_crops" in x for x in batched_inputs):
                return person_crop_inference(self, batched_inputs)
            return self.inference(batched_inputs)
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("DensePoseFCN training needs 'instances' in every input")
        images = self.preprocess_image(batched_inputs)
        maps = self.head(self.backbone(images.tensor))  # low resolution: see DensePoseFCNLoss
        instances = [x["instances"].to(self.device) for x in batched_inputs]
        return self.loss(maps, instances, tuple(images.tensor.shape[-2:]))

    # ----------------------------------------------------------------------------- inference
    def _runs(self) -> List[Tuple[Optional[int], bool]]:
        sizes: List[Optional[int]] = list(self.test_min_sizes) or [None]
        flips = (False, True) if self.test_flip else (False,)
        return [(s, flip) for s in sizes for flip in flips]

    def dense_outputs(self, batched_inputs: List[dict]) -> List[DensePoseChartOutput]:
        """Per image, (1, C, h, w) maps at its input size: coarse and fine segmentation as log
        probabilities, U and V; merged over the test scales / flips when enabled."""
        sizes = [tuple(x["image"].shape[-2:]) for x in batched_inputs]
        per_image: List[List[DensePoseChartOutput]] = [[] for _ in batched_inputs]
        for min_size, flip in self._runs():
            images = []
            for x, (h, w) in zip(batched_inputs, sizes):
                size = (h, w) if min_size is None else scaled_size(h, w, min_size,
                                                                    self.test_max_size)
                image = resize_image(x["image"].to(self.device), size)
                images.append(image.flip(-1) if flip else image)
            batch = self._normalize(images)
            maps = self.predict_maps(batch)
            for k, (h, w) in enumerate(sizes):
                hs, ws = batch.image_sizes[k]
                m = to_log_probs(resize_maps(_crop(maps[k], hs, ws), (h, w)))
                if flip:
                    m = flip_back(m, self.transform_data)
                per_image[k].append(m)
        return [merge_predictions(runs) for runs in per_image]

    def inference(
        self,
        batched_inputs: List[dict],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        """DensePose instances of each image (the contract of ``GeneralizedRCNN.inference``).

        Without ``detected_instances`` the instances are the person components of the
        predicted mask (see :mod:`.instances`). With them (boxes in input image coordinates),
        each given instance is returned with ``pred_densepose`` predicted inside its box; its
        boxes are first clipped to the image, as postprocessing would, so the DensePose grid
        keeps spanning the returned box. With ``do_postprocess`` the results are
        ``[{"instances": ...}]`` rescaled to the inputs' "height" / "width"; else a list of
        Instances in input coordinates.
        """
        if detected_instances is not None and len(detected_instances) != len(batched_inputs):
            raise ValueError(
                f"{len(detected_instances)} detected_instances for {len(batched_inputs)} images"
            )
        maps = self.dense_outputs(batched_inputs)
        results = []
        for k, m in enumerate(maps):
            size = tuple(m.coarse_segm.shape[-2:])
            if detected_instances is None:
                results.append(self._instances_from_maps(m, size))
            else:
                results.append(self._densepose_in_boxes(m, detected_instances[k], size))
        if not do_postprocess:
            return results
        return self._postprocess(results, batched_inputs)

    def _instances_from_maps(self, maps: DensePoseChartOutput, size: Tuple[int, int]
                             ) -> Instances:
        person = maps.coarse_segm[0, 1].exp()
        boxes, scores = person_components(person, self.min_area, self.max_detections)
        result = Instances(size)
        result.pred_boxes = Boxes(boxes)
        result.scores = scores
        result.pred_classes = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        result.pred_densepose = crop_maps_to_boxes(maps, boxes, self.heatmap_size)
        return result

    def _densepose_in_boxes(self, maps: DensePoseChartOutput, given: Instances,
                            size: Tuple[int, int]) -> Instances:
        if tuple(given.image_size) != size:
            raise ValueError(
                f"detected_instances of image size {tuple(given.image_size)} for an input of "
                f"size {size}"
            )
        result = Instances(size, **given.get_fields()).to(self.device)
        boxes = result.pred_boxes.clone()
        boxes.clip(size)
        result.pred_boxes = boxes
        result.pred_densepose = crop_maps_to_boxes(maps, boxes.tensor, self.heatmap_size)
        return result

    @staticmethod
    def _postprocess(instances: List[Instances], batched_inputs: List[dict]) -> List[dict]:
        """Rescale to the original image sizes. Boxes are scaled; ``pred_densepose`` lives in
        the box frame and stays valid as is."""
        out = []
        for inst, x in zip(instances, batched_inputs):
            height = x.get("height", inst.image_size[0])
            width = x.get("width", inst.image_size[1])
            out.append({"instances": detector_postprocess(inst, height, width)})
        return out


def _crop(maps: DensePoseChartOutput, height: int, width: int) -> DensePoseChartOutput:
    """The top-left ``height`` x ``width`` part of the maps (the image without padding)."""
    return DensePoseChartOutput(
        coarse_segm=maps.coarse_segm[..., :height, :width],
        fine_segm=maps.fine_segm[..., :height, :width],
        u=maps.u[..., :height, :width], v=maps.v[..., :height, :width],
    )
