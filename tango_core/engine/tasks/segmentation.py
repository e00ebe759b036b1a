"""Instance segmentation with the YOLOv9-seg models: the detection task with polygons.

Training adds the mask loss (prototype masks against the rasterised polygons, inside each box);
validation reports the box metrics of the detection task (mask AP is not computed yet).
"""

from __future__ import annotations

from . import register_task
from .detection import DetectionTask


@register_task("segmentation", fitness="0.1 mAP50 + 0.9 mAP50-95 (boxes)")
class SegmentationTask(DetectionTask):
    name = "segmentation"
    segmentation = True
