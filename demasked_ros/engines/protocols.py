"""The two small protocols every model backend implements.

Keeping them this small is what lets a team plug in its own model: anything that maps a batch of
RGB images to labels is a :class:`Segmenter`; anything that fills masked pixels is a
:class:`Demasker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Segmenter(Protocol):
    """Maps a batch of RGB uint8 images (B x H x W x 3) to integer labels (B x H x W).

    ``class_names[i]`` names label ``i``. Any resizing the model needs happens inside
    :meth:`segment` (after demasking), and labels come back at the input resolution.
    Implementations must be deterministic: the same batch gives the same labels.
    """

    @property
    def class_names(self) -> Sequence[str]:
        """Name of each class; label ``i`` is ``class_names[i]``."""
        ...

    def segment(self, images: np.ndarray) -> np.ndarray:
        """Labels for each image of the batch, B x H x W integers in ``0 .. len(class_names)-1``."""
        ...


@runtime_checkable
class Demasker(Protocol):
    """Fills the masked pixels of a batch of masked images (inpainting).

    ``images`` is B x H x W x 3 uint8 whose masked pixels the engine has already set to zero;
    ``visible`` is B x H x W bool (True = visible). By contract a demasker reads only visible
    pixels, so its output depends on nothing a patch in a masked region could change.
    """

    def demask(self, images: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """Demasked images, B x H x W x 3 uint8."""
        ...
