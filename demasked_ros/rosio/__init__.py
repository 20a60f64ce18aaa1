"""ROS I/O, below the apps: image codec, typestore, bag reading and writing, topics and QoS, and
certification results as output messages (:mod:`.messages`).

May import core, engines and datasets; never the apps (the node and the evaluator both build on it).
"""
