"""Instance segmentation with the YOLOv9-seg models: the detection task with polygons.

Training adds the mask loss (prototype masks against the rasterised polygons, inside each box);
validation reports box and mask metrics (mask AP at the prototypes' resolution, a quarter of the
input, as the YOLO repositories compute it); fitness is the sum of the box and mask fitness.
"""

from __future__ import annotations

from . import register_task
from .detection import DetectionTask


@register_task("segmentation", fitness="box + mask (0.1 mAP50 + 0.9 mAP50-95 each)")
class SegmentationTask(DetectionTask):
    name = "segmentation"
    segmentation = True
