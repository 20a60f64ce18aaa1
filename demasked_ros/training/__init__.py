"""Training of the project's default models (needs the ``train`` extra: torch, tqdm).

``demasked-train segmenter ...`` and ``demasked-train demasker ...`` reproduce the committed
ONNX files from CamVid; the runtime packages (core, engines, apps) never import this package.
The networks themselves are defined in ``engines.segmenter_net`` / ``engines.demasker_net``.
"""
