"""Training of the project's default models (needs the ``train`` extra: torch, tqdm).

``demasked-train segmenter ...`` and ``demasked-train demasker ...`` reproduce the committed
ONNX files from CamVid. The runtime packages (core, engines, apps) never import its training
code; only ``engines.torch_twins`` imports the two torch-only architecture modules
(``segmenter_model``, ``demasker_model``) to build the torch twins of the default models.
"""
