"""detectron2 ``DatasetEvaluator`` for DensePose: GPS / GPSm AP-AR and pointwise AUC.

``process`` turns each image's ``instances`` (pred_boxes, scores, pred_classes, pred_densepose
chart outputs) into compact result records (box IUV as base64 PNG); ``evaluate`` gathers them
across processes, writes ``coco_densepose_results.json`` and ``densepose_metrics.json`` to
``output_dir`` and returns::

    {"densepose_gps":  {AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl},   # normalisation N
     "densepose_gpsm": {...},                                                   # normalisation N
     "densepose_gps_<other>": {...}, "densepose_gpsm_<other>": {...},           # the other one
     "densepose_pointwise": {auc10, auc20, auc30},
     "densepose_summary": {gps_ap, gpsm_ap, auc10, auc20, auc30, gps_ap_paper, ...}}

N is the evaluator's ``normalization`` (default ``"coarse_part"``, the upstream DensePose
convention, so numbers compare with published detectron2 results). The evaluation protocol
(:mod:`.protocol`; default ``"detectron2"``, bit-compatible with the official evaluator;
``"exact"`` for data rendered with our pixel-centre conventions, such as the embedded datasets)
decides how results are quantised, where GT points are read and the ignore rules. Protocol and
normalisation are named in the tables, the log and the metrics json. AP/AR are in percent,
AUCs are fractions in [0, 1].
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table
from pycocotools.coco import COCO

from ..body import BodyModel, get_body_model
from ..structures.coco_format import encode_iuv_png
from ..utils import atomic_write
from .densepose_coco_eval import (DECODED_KEY, DensePoseEvaluationError, PairSimilarities,
                                  build_coco_detections, evaluate_ap)
from .gps import NORMALIZATIONS, PAPER_KAPPA
from .gt_preparation import gt_cache_file
from .iuv import box_grid_size, instances_to_box_iuvs
from .pointwise import auc_metrics, best_gps_point_errors, concatenate_errors
from .protocol import DEFAULT_PROTOCOL, PROTOCOL_DESCRIPTIONS, check_protocol

__all__ = ["DensePoseEvaluator", "evaluate_densepose_results", "instances_to_results",
           "load_body_for_dataset", "NORMALIZATION_DESCRIPTIONS"]

logger = logging.getLogger(__name__)

RESULTS_FILE = "coco_densepose_results.json"
#: bytes of decoded result maps a single-process evaluator keeps in memory (beyond: PNG only)
KEEP_MAPS_BYTES = 512 * 2 ** 20
METRICS_FILE = "densepose_metrics.json"
#: one-line description of each GPS normalisation, written next to the numbers
NORMALIZATION_DESCRIPTIONS = {
    "paper": f"single kappa = {PAPER_KAPPA} m (Guler et al. 2018)",
    "coarse_part": "kappa per coarse part of the GT point (upstream DensePose evaluation)",
}


def gather_on_main(items: list, distributed: bool) -> Optional[list]:
    """Every process's ``items`` concatenated on the main process; None on the others."""
    if not distributed:
        return items
    comm.synchronize()
    gathered = comm.gather(items, dst=0)
    if not comm.is_main_process():
        return None
    return list(itertools.chain(*gathered))


def instances_to_results(instances, image_id: int, class_to_category: Dict[int, int],
                         protocol: str = "exact", keep_maps: bool = False) -> List[dict]:
    """Result records of one image's predicted instances (boxes XYWH, box IUV as PNG, made
    with ``protocol``'s conventions). ``keep_maps`` also keeps the stored uint8 maps under
    ``DECODED_KEY`` so that an in-process evaluation need not decode the PNG again."""
    n = len(instances)
    if n == 0:
        return []
    if not instances.has("pred_densepose"):
        raise DensePoseEvaluationError(
            f"image id={image_id}: predicted instances carry no 'pred_densepose'")
    boxes = instances.pred_boxes.tensor.detach().cpu().numpy()
    boxes = BoxMode.convert(boxes, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
    scores = instances.scores.detach().cpu().numpy().tolist()
    classes = instances.pred_classes.detach().cpu().numpy().tolist()
    iuvs = instances_to_box_iuvs(instances.pred_densepose, boxes, protocol)
    results = []
    for k in range(n):
        hi, wi = box_grid_size(boxes[k], protocol)
        record = {
            "image_id": image_id,
            "category_id": class_to_category.get(int(classes[k]), int(classes[k])),
            "bbox": [float(c) for c in boxes[k]],
            "score": float(scores[k]),
            "densepose": {"iuv_png": encode_iuv_png(*iuvs[k]), "box_size": [wi, hi]},
        }
        if keep_maps:
            I, U, V = iuvs[k]
            q = [np.round(np.clip(np.asarray(c, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
                 for c in (U, V)]  # what encode_iuv_png stores
            record[DECODED_KEY] = (np.asarray(I, np.uint8), q[0], q[1])
        results.append(record)
    return results


def load_body_for_dataset(dataset_name: str):
    """Body model whose geodesics evaluate ``dataset_name``: the official DensePose data files
    in its metadata's ``densepose_data_dir`` when set, else the embedded body."""
    meta = MetadataCatalog.get(dataset_name)
    data_dir = getattr(meta, "densepose_data_dir", None)
    if data_dir:
        return BodyModel.from_official_files(data_dir)

    return get_body_model()


def evaluate_densepose_results(coco_gt: COCO, results: Sequence[dict], body,
                               normalization: str = "coarse_part",
                               img_ids: Optional[Sequence[int]] = None, max_dets: int = 20,
                               source: str = "ground truth",
                               protocol: str = DEFAULT_PROTOCOL,
                               gt_cache_file: Optional[str] = None) -> "OrderedDict[str, dict]":
    """GPS / GPSm AP-AR under both normalisations and the pointwise AUCs of result records,
    under the evaluation ``protocol`` (:mod:`.protocol`; the records should have been made
    with the same one).

    ``img_ids`` restricts evaluation to those images (default: every GT image);
    ``gt_cache_file`` keeps the prepared ground truth for later processes
    (:func:`.gt_preparation.gt_cache_file`). Returns the results dict described in the module
    docstring.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown GPS normalisation {normalization!r}; "
                         f"expected one of {NORMALIZATIONS}")
    check_protocol(protocol)
    coco_dt = build_coco_detections(coco_gt, results)
    pairs = PairSimilarities(body, coco_gt, coco_dt, max_dets=max_dets, source=source,
                             protocol=protocol, gt_cache_file=gt_cache_file)
    img_ids = sorted(coco_gt.getImgIds() if img_ids is None else set(img_ids))
    unknown = [i for i in img_ids if i not in coco_gt.imgs]
    if unknown:
        raise DensePoseEvaluationError(
            f"{source}: image ids {unknown[:5]} of the predictions are not in the ground truth")
    if protocol == "detectron2" and any(coco_gt.imgs[i].get("ignore_regions_x")
                                        for i in img_ids):
        logger.warning("%s: images carry ignore_regions_x, which the official evaluator uses "
                       "to drop GT and detections; this evaluation does not", source)
    ordered = [normalization] + [n for n in NORMALIZATIONS if n != normalization]
    pairs.compute((i, c) for i in img_ids for c in coco_gt.getCatIds())
    variants = [(measure, norm) for norm in ordered for measure in ("gps", "gpsm")]
    by_variant = evaluate_ap(coco_gt, coco_dt, pairs, variants, img_ids)
    ap: Dict[str, Dict[str, "OrderedDict[str, float]"]] = {}
    for measure, norm in variants:
        ap.setdefault(norm, {})[measure] = by_variant[measure, norm]

    errors = []
    for img_id in img_ids:
        for cat_id in coco_gt.getCatIds():
            pp = pairs.image(img_id, cat_id)
            errors.append(best_gps_point_errors(pp.errors, pp.gps["paper"],
                                                pp.gt_points.num_points))
    errors = concatenate_errors(errors)
    pointwise = auc_metrics(errors)

    out: "OrderedDict[str, dict]" = OrderedDict()
    out["densepose_gps"] = ap[normalization]["gps"]
    out["densepose_gpsm"] = ap[normalization]["gpsm"]
    for norm in ordered[1:]:
        out[f"densepose_gps_{norm}"] = ap[norm]["gps"]
        out[f"densepose_gpsm_{norm}"] = ap[norm]["gpsm"]
    out["densepose_pointwise"] = OrderedDict(pointwise)
    summary = OrderedDict(gps_ap=out["densepose_gps"]["AP"], gpsm_ap=out["densepose_gpsm"]["AP"],
                          **pointwise)
    for norm in ordered:
        summary[f"gps_ap_{norm}"] = ap[norm]["gps"]["AP"]
        summary[f"gpsm_ap_{norm}"] = ap[norm]["gpsm"]["AP"]
    summary["num_points"] = float(len(errors))
    out["densepose_summary"] = summary
    return out


class DensePoseEvaluator(DatasetEvaluator):
    """Evaluate DensePose chart predictions on a registered DensePose-COCO style dataset.

    Args:
        dataset_name: registered dataset; its metadata gives ``json_file`` (the GT),
            ``thing_dataset_id_to_contiguous_id`` and ``densepose_data_dir`` (official data
            files for the geodesics; None -> the embedded body model).
        output_dir: where the results and metrics json files are written (None: not written).
        distributed: gather predictions from all processes and evaluate on the main one.
        normalization: GPS normalisation of the headline numbers, ``"coarse_part"`` or
            ``"paper"`` (the other one is reported too, under its name).
        body_model: body model to use instead of the one the metadata implies.
        max_dets: detections per image considered (upstream DensePose evaluation: 20).
        protocol: evaluation protocol (:mod:`.protocol`): ``"detectron2"`` (default; the
            official evaluator's conventions) or ``"exact"`` (our renderer's; the embedded
            datasets' configs pin it with ``DENSEPOSE_EVALUATION.PROTOCOL``).
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None,
                 distributed: bool = True, normalization: str = "coarse_part",
                 body_model=None, max_dets: int = 20, protocol: str = DEFAULT_PROTOCOL):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown GPS normalisation {normalization!r}; "
                             f"expected one of {NORMALIZATIONS}")
        self._protocol = check_protocol(protocol)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._normalization = normalization
        self._body = body_model
        self._max_dets = max_dets
        meta = MetadataCatalog.get(dataset_name)
        json_file = getattr(meta, "json_file", None)
        if not json_file:
            raise DensePoseEvaluationError(
                f"dataset {dataset_name!r} has no 'json_file' in its metadata; DensePose "
                "evaluation needs the DensePose-COCO annotation file")
        self._json_file = json_file
        mapping = getattr(meta, "thing_dataset_id_to_contiguous_id", {1: 0})
        self._class_to_category = {v: k for k, v in mapping.items()}
        self._coco_gt: Optional[COCO] = None
        self._predictions: List[dict] = []
        self._kept_bytes = 0

    @property
    def normalization(self) -> str:
        """Normalisation of the ``densepose_gps`` / ``densepose_gpsm`` numbers."""
        return self._normalization

    @property
    def protocol(self) -> str:
        """Evaluation protocol of every number this evaluator reports."""
        return self._protocol

    def reset(self) -> None:
        self._predictions = []
        self._kept_bytes = 0

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            record = {"image_id": inp["image_id"], "results": []}
            if "instances" in out:
                keep = (comm.get_world_size() == 1 or not self._distributed) and \
                    self._kept_bytes < KEEP_MAPS_BYTES
                record["results"] = instances_to_results(
                    out["instances"].to("cpu"), inp["image_id"], self._class_to_category,
                    self._protocol, keep_maps=keep)
                self._kept_bytes += sum(3 * r[DECODED_KEY][0].size for r in record["results"]
                                        if DECODED_KEY in r)
            self._predictions.append(record)

    def _ground_truth(self) -> COCO:
        if self._coco_gt is None:
            if not os.path.isfile(self._json_file):
                raise DensePoseEvaluationError(f"{self._json_file}: annotation file not found")
            with contextlib.redirect_stdout(io.StringIO()):
                self._coco_gt = COCO(self._json_file)
        return self._coco_gt

    def evaluate(self, img_ids: Optional[Sequence[int]] = None):
        """Metrics on the processed images (or ``img_ids``); {} on non-main processes."""
        predictions = gather_on_main(self._predictions, self._distributed)
        if predictions is None:
            return {}
        if not predictions:
            logger.warning("[DensePoseEvaluator] no predictions were processed")
            return {}
        results = list(itertools.chain(*(p["results"] for p in predictions)))
        if img_ids is None:
            img_ids = [p["image_id"] for p in predictions]
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with atomic_write(os.path.join(self._output_dir, RESULTS_FILE), "w") as f:
                json.dump([{k: v for k, v in r.items() if k != DECODED_KEY}
                           for r in results], f)
        if self._body is None:
            self._body = load_body_for_dataset(self._dataset_name)
        metrics = evaluate_densepose_results(
            self._ground_truth(), results, self._body, self._normalization,
            img_ids=img_ids, max_dets=self._max_dets, source=self._json_file,
            protocol=self._protocol,
            gt_cache_file=gt_cache_file(self._json_file, self._protocol, self._body))
        self._report(metrics, len(set(img_ids)), len(results))
        return metrics

    def _report(self, metrics: Dict[str, dict], num_images: int, num_dets: int) -> None:
        norm, protocol = self._normalization, self._protocol
        logger.info("DensePose evaluation of %s: %d images, %d detections, %d GT points; "
                    "protocol %r (%s); GPS normalisation %r (%s)", self._dataset_name,
                    num_images, num_dets, int(metrics["densepose_summary"]["num_points"]),
                    protocol, PROTOCOL_DESCRIPTIONS[protocol], norm,
                    NORMALIZATION_DESCRIPTIONS[norm])
        for task, values in metrics.items():
            if task == "densepose_summary":
                continue
            name = task.replace("densepose_", "")
            if task in ("densepose_gps", "densepose_gpsm"):
                name += f" [{protocol} protocol, {norm}]"
            elif task != "densepose_pointwise":
                measure, other = name.split("_", 1)
                name = f"{measure} [{protocol} protocol, {other}]"
            else:
                name += f" [{protocol} protocol]"
            logger.info("DensePose %s:\n%s", name, create_small_table(dict(values)))
        if self._output_dir:
            payload = OrderedDict(
                dataset=self._dataset_name,
                protocol=OrderedDict(name=protocol, description=PROTOCOL_DESCRIPTIONS[protocol]),
                normalization=OrderedDict(name=norm, description=NORMALIZATION_DESCRIPTIONS[norm]),
                **{k: v for k, v in metrics.items()},
            )
            with atomic_write(os.path.join(self._output_dir, METRICS_FILE), "w") as f:
                json.dump(json_safe(payload), f, indent=2)


def json_safe(obj):
    """nan / inf -> None so the metrics file is strict json."""
    if isinstance(obj, dict):
        return OrderedDict((k, json_safe(v)) for k, v in obj.items())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
