"""Training of the project's default models (needs the ``train`` extra: torch, tqdm).

``demasked-train segmenter ...`` and ``demasked-train demasker ...`` reproduce the committed
ONNX files from CamVid. The runtime packages (core, engines, apps) never import its training
code; the one exception is ``engines.torch_twins``, which builds the torch twins of the default
models from the two torch-only architecture modules (``segmenter_model``, ``demasker_model``).
"""
