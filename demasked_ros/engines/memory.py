"""How many branches fit in one chunk: a frame's working set against a memory budget.

Why: the branches of a frame run as batches, and a batch's memory grows with the frame size. At
480x360 all K branches fit in a few hundred MB; at 3840x2160 running them as one batch took a
node from 0.5 GB to 14 GB. The executor therefore derives the branches per chunk from the frame
size and a byte budget for one frame's working set (at least one branch: a single branch that
does not fit is still run, the budget then only stops batching; the working resolution is what
makes such frames cheap).

The working set of a chunk of ``b`` branches of an ``H x W`` frame, in bytes:

* all ``K`` branch labels, kept until aggregation: ``K * H * W * LABEL_BYTES`` (fixed per frame);
* per branch: its masked copy and its demasked copy (``2 * 3`` bytes per pixel, uint8 RGB), its
  labels as the segmenter returns them (``LABEL_BYTES``) and :data:`ACTIVATION_BYTES_PER_PIXEL`,
  a documented allowance for the models' float32 input tensors and intermediate activations.

The allowance was measured with the packaged models (ONNX Runtime, CPU, 480x360, batch 8 over
batch 1, peak RSS): the learned demasker takes about 216 bytes per pixel per image (float32 image
and mask tensors, padded to its stride, and its encoder-decoder activations), the segmenter about
94. They run one after the other, so the larger counts; 320 leaves a margin for allocator slack.
A heavier user model needs a larger allowance (``activation_bytes_per_pixel``) or a larger budget.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from typing import Any

from demasked_ros.engines.errors import EngineError

#: Default budget for one frame's working set: 1.5 GB.
DEFAULT_MEMORY_BUDGET = 1_500_000_000
#: Bytes per pixel of one branch's masked and demasked uint8 RGB copies.
COPY_BYTES_PER_PIXEL = 2 * 3
#: Bytes per label (int32, as the segmenters return them).
LABEL_BYTES = 4
#: Allowance for the models' tensors and activations per pixel of one branch (see module doc).
ACTIVATION_BYTES_PER_PIXEL = 320


def branch_bytes(height: int, width: int,
                 activation_bytes_per_pixel: int = ACTIVATION_BYTES_PER_PIXEL) -> int:
    """Bytes one branch of an ``height x width`` frame adds to a chunk's working set."""
    return height * width * (COPY_BYTES_PER_PIXEL + LABEL_BYTES + activation_bytes_per_pixel)


def frame_bytes(height: int, width: int, k: int) -> int:
    """Bytes fixed per frame whatever the chunking: the K branch labels kept for aggregation."""
    return k * height * width * LABEL_BYTES


def branches_per_chunk(height: int, width: int, k: int, budget: int,
                       activation_bytes_per_pixel: int = ACTIVATION_BYTES_PER_PIXEL) -> int:
    """Most branches (1..k) whose chunk fits ``budget`` bytes with the frame's fixed part.

    Raises:
        EngineError: for a non-positive size, ``k`` or budget.
    """
    if min(height, width, k, budget) < 1 or activation_bytes_per_pixel < 0:
        raise EngineError(f"need positive sizes, k and budget, got {height}x{width}, k={k}, "
                          f"budget={budget}, activation={activation_bytes_per_pixel}")
    free = budget - frame_bytes(height, width, k)
    fits = free // branch_bytes(height, width, activation_bytes_per_pixel)
    return int(min(k, max(1, fits)))


def working_set_bytes(height: int, width: int, k: int, chunk: int,
                      activation_bytes_per_pixel: int = ACTIVATION_BYTES_PER_PIXEL) -> int:
    """Estimated peak working set of a frame run ``chunk`` branches at a time (for reports)."""
    return frame_bytes(height, width, k) + min(chunk, k) * branch_bytes(height, width,
                                                                        activation_bytes_per_pixel)


def release_memory() -> bool:
    """Hand freed memory back to the OS after a large frame: collect garbage, trim the C heap.

    Why: numpy and ONNX Runtime free their buffers, but glibc keeps freed heap pages (and the
    arenas of worker threads) mapped, so a node that saw one 4K frame stayed gigabytes larger.
    ``malloc_trim(0)`` returns them. Returns True when the trim ran (glibc), False elsewhere.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None on other C libraries."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)
