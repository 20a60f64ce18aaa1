"""demasked_ros: certified semantic segmentation against adversarial patches (DEMASKED SMOOTHING).

Rings, imports pointing inward only: :mod:`demasked_ros.core` (numpy), :mod:`demasked_ros.engines`
(demaskers, segmenters, the branch runner) and :mod:`demasked_ros.apps` (ROS node, evaluator, CLIs).
"""

__version__ = "0.1.0"
