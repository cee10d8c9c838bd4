"""Single-person evaluation: DensePose of every GT person predicted on its own crop.

The inputs come from :class:`densepose_ext.data.PersonCropMapper` in inference mode: per image,
``person_crops`` holds each person's crop image, its GT box in crop coordinates ("box") and in
original image coordinates ("source_box"). Each crop is predicted with its box given (the
``detected_instances`` path), and since the crop is a scale + translation of the image,
``pred_densepose`` (which lives in the box frame) is also the prediction for the original
box. The results are therefore instances of the original image, scored by the standard
evaluators like any detector output.
"""
from __future__ import annotations

from typing import List

import torch
from detectron2.structures import Boxes, Instances

from densepose_ext.structures import DensePoseChartOutput

__all__ = ["person_crop_inference"]


def person_crop_inference(model, batched_inputs: List[dict], batch_size: int = 8) -> List[dict]:
    """``[{"instances": Instances}]`` in original image coordinates, one per input image.

    Each instance is one GT person: pred_boxes = its GT box, pred_classes = 0, pred_densepose
    = the crop's prediction in that box, scores = the mean person probability over the box
    grid. ``model`` is a :class:`DensePoseFCN`; crops are run ``batch_size`` at a time.
    """
    outputs = []
    for x in batched_inputs:
        if "person_crops" not in x:
            raise ValueError(
                f"image id={x.get('image_id', '?')}: single-person inference needs "
                "'person_crops' in every input (PersonCropMapper in inference mode)"
            )
        crops = x["person_crops"]
        preds = []
        for start in range(0, len(crops), batch_size):
            chunk = crops[start : start + batch_size]
            given = [
                Instances(tuple(c["image"].shape[-2:]), pred_boxes=Boxes(
                    torch.as_tensor(c["box"], dtype=torch.float32).view(1, 4)))
                for c in chunk
            ]
            preds += model.inference([{"image": c["image"]} for c in chunk],
                                     detected_instances=given, do_postprocess=False)
        result = Instances((int(x["height"]), int(x["width"])))
        if preds:
            densepose = DensePoseChartOutput.cat([p.pred_densepose for p in preds])
            boxes = torch.stack([torch.as_tensor(c["source_box"], dtype=torch.float32)
                                 for c in crops]).to(model.device)
        else:
            size = model.heatmap_size
            densepose = DensePoseChartOutput(
                *(torch.zeros((0, c, size, size), device=model.device) for c in model.head.channels)
            )
            boxes = torch.zeros((0, 4), device=model.device)
        result.pred_boxes = Boxes(boxes)
        result.scores = densepose.coarse_segm.softmax(dim=1)[:, 1].mean(dim=(1, 2))
        result.pred_classes = torch.zeros(len(boxes), dtype=torch.long, device=model.device)
        result.pred_densepose = densepose
        outputs.append({"instances": result})
    return outputs
