"""Evaluation protocols: how DensePose results are produced, placed and scored.

Two protocols, named next to every number they produce:

- ``"detectron2"`` (default): bit-compatible with the official DensePose evaluator of detectron2
  v0.6 (``projects/DensePose/densepose/evaluation``), so numbers compare with published ones.
  A GT point sits at ``x0 + dp_x * w / 255`` and is read from a detection's box map at
  ``int(x - box_x0)`` (truncation); a box map has ``int(w) x int(h)`` cells (at least 1),
  placed at the truncated box corner; predicted parts are the fine segmentation's argmax over
  all 25 channels (background included) inside the coarse foreground, and U, V are stored as
  ``uint8(255 * U)`` (truncated) and read as ``q / 255``; the closest chart vertex is the
  exhaustive search's (lowest index on ties); GT persons without ``dp_x`` are ignored, a
  detection unmatched at the last threshold whose box overlaps an unmatched GT by IoU >= 0.8
  takes that GT's ignore flag at every threshold, every detection of an image whose GT persons
  are all ignored (or outside the area range, or absent) is ignored; the GPSm GT mask is the
  union of the ``dp_masks`` zoomed bilinearly (scipy) to the box size and thresholded at 0.5.
- ``"exact"``: the conventions of our renderer and training targets: a GT point sits at
  ``x0 + dp_x * w / 256`` (pixel centres of the 256-cell box frame); box maps have the box's
  rounded size and cover the box exactly; U, V are stored rounded; parts are the argmax over
  the 24 parts inside the coarse foreground; GT masks are pasted nearest-neighbour; persons
  without DensePose points or crowds are ignored; an image without any GT person keeps COCO
  semantics (its detections are false positives). The embedded datasets are rendered with
  these conventions, so their configs pin this protocol.
"""
from typing import Dict

__all__ = ["PROTOCOLS", "DEFAULT_PROTOCOL", "PROTOCOL_DESCRIPTIONS", "check_protocol",
           "OFFICIAL_DP_SCALE"]

#: protocol names accepted everywhere a DensePose result is produced or evaluated
PROTOCOLS = ("detectron2", "exact")
DEFAULT_PROTOCOL = "detectron2"
#: one-line description of each protocol, written next to the numbers
PROTOCOL_DESCRIPTIONS: Dict[str, str] = {
    "detectron2": "official detectron2 v0.6 DensePose evaluation (points at dp/255, truncated "
                  "boxes, upstream ignore rules and GT masks)",
    "exact": "renderer conventions (points at pixel centres dp/256, rounded boxes)",
}
#: the official evaluator maps dp_x, dp_y in [0, 255] (not 256) onto the box
OFFICIAL_DP_SCALE = 255.0


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is known, else a ValueError listing the known ones."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown DensePose evaluation protocol {protocol!r}; "
                         f"expected one of {PROTOCOLS}")
    return protocol
