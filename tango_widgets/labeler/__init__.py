"""The labeler: class labels, boxes and polygons on a dataset's images, saved as you go."""

from ._session import LabelSession
from ._widget import LabelCanvas, Labeler

__all__ = ["LabelCanvas", "LabelSession", "Labeler"]
