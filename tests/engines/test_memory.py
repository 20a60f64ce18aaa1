"""Branches per chunk follow the frame size and the memory budget; the executor honours them."""

import numpy as np
import pytest

from demasked_ros.core.masks import recovery_masks
from demasked_ros.engines.certifier import Certifier, ChunkedExecutor
from demasked_ros.engines.demaskers import SolidFillDemasker
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.memory import (
    DEFAULT_MEMORY_BUDGET,
    branch_bytes,
    branches_per_chunk,
    frame_bytes,
    working_set_bytes,
)
from demasked_ros.engines.segmenters import CallableSegmenter
from tests.tiny_models import CLASS_NAMES, colour_rule


@pytest.mark.parametrize(("height", "width"), [(360, 480), (720, 1280), (1080, 1920), (2160, 3840)])
@pytest.mark.parametrize("k", [3, 5, 9, 25])
def test_chunk_fits_the_budget_unless_one_branch_alone_does_not(height, width, k):
    chunk = branches_per_chunk(height, width, k, DEFAULT_MEMORY_BUDGET)
    assert 1 <= chunk <= k
    if chunk > 1:
        assert working_set_bytes(height, width, k, chunk) <= DEFAULT_MEMORY_BUDGET
    if chunk < k:  # one more branch would not have fitted
        assert working_set_bytes(height, width, k, chunk + 1) > DEFAULT_MEMORY_BUDGET or chunk == 1


def test_default_budget_figures():
    assert branches_per_chunk(360, 480, 3, DEFAULT_MEMORY_BUDGET) == 3  # VGA-ish: all branches at once
    assert branches_per_chunk(2160, 3840, 3, DEFAULT_MEMORY_BUDGET) == 1  # 4K: one at a time
    assert branch_bytes(2160, 3840) > DEFAULT_MEMORY_BUDGET // 2
    assert frame_bytes(10, 10, 3) == 1200
    with pytest.raises(EngineError):
        branches_per_chunk(0, 10, 3, DEFAULT_MEMORY_BUDGET)


def test_executor_derives_chunks_from_frame_size_and_budget():
    budget = working_set_bytes(40, 50, 7, 3)  # exactly three branches of a 40x50 frame fit
    executor = ChunkedExecutor(memory_budget=budget)
    assert executor.chunk_for(7, 40, 50) == 3
    assert executor.chunk_for(7, 80, 100) == 1  # four times the pixels: only one branch
    assert ChunkedExecutor(2, memory_budget=budget).chunk_for(7, 40, 50) == 2  # chunk_size caps
    assert ChunkedExecutor(memory_budget=None).chunk_for(7, 2000, 2000) == 7
    with pytest.raises(EngineError):
        ChunkedExecutor(memory_budget=0)


def test_batches_seen_by_the_models_respect_the_budget_and_results_do_not_change():
    masks = recovery_masks(48, 64, (6, 8), "4-mask")
    batches = []

    def recording(images):
        batches.append(len(images))
        return colour_rule(images)

    image = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    budget = working_set_bytes(48, 64, masks.k, 4)
    small = Certifier(CallableSegmenter(recording, CLASS_NAMES), SolidFillDemasker(), masks,
                      memory_budget=budget).certify(image)
    assert max(batches) == 4 and sum(batches) == masks.k
    batches.clear()
    whole = Certifier(CallableSegmenter(recording, CLASS_NAMES), SolidFillDemasker(), masks,
                      memory_budget=None).certify(image)
    assert batches == [masks.k]
    np.testing.assert_array_equal(small.branch_labels, whole.branch_labels)


def test_release_memory_returns_freed_heap_pages_to_the_os():
    import ctypes.util
    from pathlib import Path

    from demasked_ros.engines.memory import release_memory

    def rss_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        pytest.skip("no /proc")

    if ctypes.util.find_library("c") is None:
        pytest.skip("no C library found")
    release_memory()
    # many small blocks (below the mmap threshold) live on the heap; freeing them keeps the pages
    blocks = [bytearray(64 * 1024 - 64) for _ in range(6000)]  # ~380 MB
    for block in blocks:
        block[::4096] = b"\1" * len(block[::4096])
    keep = blocks[-1]
    del blocks
    before = rss_mb()
    assert release_memory() is True
    after = rss_mb()
    assert before - after > 200, (before, after)
    del keep
