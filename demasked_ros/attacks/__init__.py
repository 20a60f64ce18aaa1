"""The attack lab: adversarial patches against f and against DEMASKED SMOOTHING, and the audit.

- :mod:`.placement`: the threat model (N rectangular patches of the configured size; random, grid
  or worst-of-G locations) and pasting patches into frames.
- :mod:`.torch_models`: the differentiable pipeline (torch twins of the segmenter and demasker).
- :mod:`.pgd`: sign-gradient PGD on patch pixels with a step schedule and restarts, and the
  undefended objectives on f (untargeted cross-entropy, erase a class, paint a class).
- :mod:`.adaptive`: objectives through the demasker and segmenter of every branch that sees the
  patch (recovery: flip the vote on certified pixels; detection: change f(x) while keeping every
  branch in agreement).
- :mod:`.baselines`: random-noise and natural-image patches.
- :mod:`.audit`: re-certify attacked frames with the product :class:`~demasked_ros.engines.certifier.
  Certifier` and count certificate violations (there must be none).

Ring: attacks import core, engines and datasets only.
"""
