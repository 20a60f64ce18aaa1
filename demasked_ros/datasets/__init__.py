"""Frame sources for the evaluator and ``demasked-make-bag``: dataset folders and procedural scenes.

- :mod:`.base`: :class:`Frame`, :class:`FrameError`, the :class:`FrameSource` protocol, the layout
  registry (:func:`open_dataset`, :func:`register_layout`) and :class:`DatasetError`.
- :mod:`.camvid`: the CamVid folder reader, :func:`camvid_clip` (15 Hz clip), :func:`find_camvid_root`.
- :mod:`.procedural`: deterministic street scenes with exact CamVid labels and a smooth "drive".

Rosbag2 sources live with the evaluator (:mod:`demasked_ros.rosio.bagio`).
"""

from demasked_ros.datasets.base import (
    DatasetError,
    DatasetLayout,
    Frame,
    FrameError,
    FrameRecord,
    FrameSource,
    open_dataset,
    register_layout,
    registered_layouts,
)
from demasked_ros.datasets.camvid import CamVidSource, camvid_clip, find_camvid_root
from demasked_ros.datasets.procedural import ProceduralSource, street_scene

__all__ = [
    "CamVidSource",
    "DatasetError",
    "DatasetLayout",
    "Frame",
    "FrameError",
    "FrameRecord",
    "FrameSource",
    "ProceduralSource",
    "camvid_clip",
    "find_camvid_root",
    "open_dataset",
    "register_layout",
    "registered_layouts",
    "street_scene",
]
