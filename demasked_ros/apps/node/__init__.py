"""The ROS 2 node: camera frames in; labels, certification map, overlay, alerts and diagnostics out.

It wraps :class:`demasked_ros.engines.certifier.Certifier`; no certification logic lives here.
Importing this package does not import rclpy (``params`` and ``regions`` are usable without ROS);
:mod:`demasked_ros.apps.node.node` and :mod:`demasked_ros.apps.node.main` need it.
"""
