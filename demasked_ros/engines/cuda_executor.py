"""``CudaStreamExecutor``: the K branches of a frame on a GPU, in parallel CUDA streams, end to end.

Per frame:

1. one host-to-device copy of the frame, from pinned memory;
2. the masks live on the device, uploaded once per :class:`MaskSet` (cache keyed by identity);
3. the K branches are split into chunks spread over S streams (chunk ``i`` on stream ``i % S``),
   each chunk masked, demasked and segmented on its stream (torch engines' tensor path: no host
   round trip), and joined to the main stream with events; detection's f(x) runs on a stream of
   its own beside them;
4. aggregation on the device (:mod:`demasked_ros.engines.device_aggregate`, bit-identical to
   :mod:`demasked_ros.core.certify`), plus a device-side check that every label is a class;
5. one device-to-host copy (into pinned memory) of the branch labels, the labels, the
   certificate and that check, packed into one buffer.

Engines without a tensor path still work: a classical (OpenCV) demasker runs chunk by chunk on
CPU threads and its output is uploaded and segmented on the device as soon as it is ready, while
the threads go on with the next chunks; a numpy-only segmenter runs whole branches on CPU threads
and only the labels are uploaded. Torch engines must live on the executor's device.

Pipelining: :meth:`CudaStreamExecutor.prepare` starts frame t+1's copy on an upload stream while
frame t runs; ``run*`` accept its :class:`~.device_staging.StagedFrame` in place of the image.

``device="cpu"`` runs exactly this code with the stream and event calls as no-ops (and no
pinning): that is how CI tests it. Soundness: masking is the first thing that happens to the
frame on the device (``frame * visible``), every branch sees only its masked copy, deterministic
torch settings are on (:func:`~demasked_ros.engines.torch_runtime.configure_determinism`), and any
failure raises :class:`EngineError` so the caller fails closed. Streams, tensor-path checks and result
checks live in :mod:`~.cuda_support`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from demasked_ros.core.masks import MaskSet
from demasked_ros.engines import device_aggregate
from demasked_ros.engines.certifier import AggregatedBranches, StageClock, mask_images
from demasked_ros.engines.cuda_support import (
    _check_device_labels,
    _Lane,
    _result,
    cuda_unavailable_reason,
    tensor_demasker,
    tensor_segmenter,
)
from demasked_ros.engines.device_staging import StagedFrame, claim, stage_frame
from demasked_ros.engines.errors import EngineError
from demasked_ros.engines.protocols import Demasker, Segmenter
from demasked_ros.engines.segmenters import check_labels
from demasked_ros.engines.torch_runtime import configure_determinism, resolve_device

__all__ = ["CudaStreamExecutor", "cuda_unavailable_reason", "tensor_demasker", "tensor_segmenter"]

_MASK_CACHE_SIZE = 4


class CudaStreamExecutor:
    """A :class:`~demasked_ros.engines.certifier.BranchExecutor` (and aggregating one) on a device.

    Args:
        device: ``"cuda"``, ``"cuda:1"``, ... or ``"cpu"`` (same code, streams as no-ops).
        streams: S, the number of CUDA streams the branch chunks are spread over.
        chunk_size: branches per chunk; None: ``ceil(K / S)``, one chunk per stream.
        cpu_threads: threads for engines without a tensor path (default: S).
        sync_stages: synchronise after every stage so the stage clock shows true device times
            (profiling only: it serialises the streams).
        threads: torch CPU intra-op threads (process-wide, fixed for determinism).
    """

    def __init__(self, device: str | torch.device = "cuda", streams: int = 2, chunk_size: int | None = None,
                 cpu_threads: int | None = None, sync_stages: bool = False, threads: int = 1) -> None:
        if streams < 1:
            raise EngineError(f"streams must be >= 1, got {streams}")
        if chunk_size is not None and chunk_size < 1:
            raise EngineError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        self.device = resolve_device(device)
        configure_determinism(self.device, threads)
        self.streams = int(streams)
        self.chunk_size = chunk_size
        self.sync_stages = sync_stages
        self._main = _Lane(self.device)  # private: frames on two executors do not serialise
        self._lanes = [_Lane(self.device) for _ in range(self.streams)]
        self._fx_lane = _Lane(self.device)
        self._upload_lane = _Lane(self.device)  # prepare(): frame t+1's copy beside frame t
        self._masks: OrderedDict[int, tuple[MaskSet, torch.Tensor]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=cpu_threads or self.streams,
                                        thread_name_prefix="demasked-branch")
        self._lock = threading.Lock()

    def describe(self) -> dict[str, str]:
        """Diagnostics: executor, device and streams."""
        return {"executor": "cuda-streams", "device": str(self.device), "streams": str(self.streams),
                "chunk_size": str(self.chunk_size or "K/S")}

    def close(self) -> None:
        """Stop the CPU worker threads."""
        self._pool.shutdown(wait=True)

    def chunks(self, k: int) -> Iterator[slice]:
        """Consecutive branch index ranges covering 0..k-1."""
        size = self.chunk_size or math.ceil(k / self.streams)
        for start in range(0, k, size):
            yield slice(start, min(k, start + size))

    def prepare(self, image: np.ndarray) -> StagedFrame:
        """Start ``image``'s copy to the device now, beside any frame running (no lock taken)."""
        return stage_frame(image, self.device, self._upload_lane.stream)

    def run(self, image: np.ndarray | StagedFrame, masks: MaskSet, demasker: Demasker, segmenter: Segmenter,
            clock: StageClock) -> np.ndarray:
        """Labels of all K branches (K x H x W int32, host), in mask order."""
        with self._lock, self._device_scope(), self._main.use():
            host, frame = self._frame(image, clock)
            branches = self._branches(host, masks, demasker, segmenter, clock, frame)
            bad = device_aggregate.out_of_range(branches, len(segmenter.class_names))
            return self._download([branches], bad, [branches.shape], clock)[0]

    def run_aggregated(self, image: np.ndarray | StagedFrame, masks: MaskSet, demasker: Demasker,
                       segmenter: Segmenter, clock: StageClock, t: int) -> AggregatedBranches:
        """Branches, f(x) (detection) and the aggregate, all computed on the device."""
        with self._lock, self._device_scope(), self._main.use():
            main = self._main_stream()
            image, frame = self._frame(image, clock)
            num_classes = len(segmenter.class_names)
            plain = None
            if masks.mode == "detection":  # f(x) on its own stream, beside the branches
                self._fx_lane.wait_for(main)
                with self._fx_lane.use(), clock.measure("segmentation"):
                    plain = self._segment_frame(image, frame, segmenter)[0]
            branches = self._branches(image, masks, demasker, segmenter, clock, frame)
            self._fx_lane.join_into(main)
            with clock.measure("aggregation"):
                bad = device_aggregate.out_of_range(branches, num_classes)
                if plain is None:
                    labels, certified = device_aggregate.recover_with_margin(branches, t)
                else:
                    bad = bad | device_aggregate.out_of_range(plain, num_classes)
                    labels, certified = plain, device_aggregate.detect(plain, branches)
                self._sync_stage()
            out = self._download([branches, labels, certified], bad,
                                 [branches.shape, labels.shape, certified.shape], clock)
            return AggregatedBranches(labels=out[1], certified=out[2], branch_labels=out[0])

    # -- steps -------------------------------------------------------------------------------

    def _branches(self, image: np.ndarray, masks: MaskSet, demasker: Demasker, segmenter: Segmenter,
                  clock: StageClock, frame: torch.Tensor) -> torch.Tensor:
        """K x H x W int32 branch labels on the device (joined into the main stream)."""
        seg_on_device = tensor_segmenter(segmenter, self.device)
        dem_on_device = seg_on_device and tensor_demasker(demasker, self.device)
        main = self._main_stream()
        visible = self._device_masks(masks, clock)
        out = torch.empty((masks.k, masks.height, masks.width), dtype=torch.int32, device=self.device)
        chunks = list(self.chunks(masks.k))
        host_work: list[Future[np.ndarray]] = []
        if not dem_on_device:  # CPU threads start on every chunk now; the device consumes in order
            task = self._host_demask if seg_on_device else self._host_branch
            host_work = [self._pool.submit(task, image, masks.visible[chunk], demasker, segmenter)
                         for chunk in chunks]
        try:
            for index, chunk in enumerate(chunks):
                clock.checkpoint()
                lane = self._lanes[index % self.streams]
                lane.wait_for(main)
                with lane.use():
                    if dem_on_device:
                        labels = self._device_branch(frame, visible[chunk], demasker, segmenter, clock)
                    else:
                        with clock.measure("demasking"):
                            result = _result(host_work[index])
                        with clock.measure("segmentation"):
                            uploaded = torch.from_numpy(result).to(self.device)
                            labels = segmenter.segment_tensor(  # type: ignore[attr-defined]
                                uploaded.permute(0, 3, 1, 2).contiguous()) if seg_on_device else uploaded
                    _check_device_labels(labels, chunk.stop - chunk.start, masks.height, masks.width)
                    out[chunk].copy_(labels)
                lane.join_into(main)
        finally:
            for future in host_work:  # a failed or cancelled frame leaves no work queued
                future.cancel()
        return out

    def _device_branch(self, frame: torch.Tensor, visible: torch.Tensor, demasker: Demasker,
                       segmenter: Segmenter, clock: StageClock) -> torch.Tensor:
        with clock.measure("masking"):
            masked = frame[None] * visible[:, None]  # masking first: zero outside each branch's mask
            self._sync_stage()
        with clock.measure("demasking"):
            demasked = demasker.demask_tensor(masked, visible)  # type: ignore[attr-defined]
            if not isinstance(demasked, torch.Tensor) or demasked.shape != masked.shape \
                    or demasked.dtype != torch.uint8:
                raise EngineError(f"demasker returned {getattr(demasked, 'shape', type(demasked))}, "
                                  f"expected uint8 {tuple(masked.shape)}")
            self._sync_stage()
        with clock.measure("segmentation"):
            labels: torch.Tensor = segmenter.segment_tensor(demasked)  # type: ignore[attr-defined]
            self._sync_stage()
        return labels

    @staticmethod
    def _host_demask(image: np.ndarray, visible: np.ndarray, demasker: Demasker,
                     segmenter: Segmenter) -> np.ndarray:
        masked = mask_images(image, visible)
        demasked = demasker.demask(masked, visible)
        if not isinstance(demasked, np.ndarray) or demasked.shape != masked.shape \
                or demasked.dtype != np.uint8:
            raise EngineError(f"demasker returned {getattr(demasked, 'shape', type(demasked))}, "
                              f"expected uint8 {masked.shape}")
        return np.ascontiguousarray(demasked)

    @classmethod
    def _host_branch(cls, image: np.ndarray, visible: np.ndarray, demasker: Demasker,
                     segmenter: Segmenter) -> np.ndarray:
        demasked = cls._host_demask(image, visible, demasker, segmenter)
        labels = check_labels(segmenter.segment(demasked), demasked, len(segmenter.class_names))
        return np.ascontiguousarray(labels, dtype=np.int32)

    def _segment_frame(self, image: np.ndarray, frame: torch.Tensor, segmenter: Segmenter) -> torch.Tensor:
        if tensor_segmenter(segmenter, self.device):
            labels: torch.Tensor = segmenter.segment_tensor(frame[None])  # type: ignore[attr-defined]
        else:
            batch = image[None]
            host = check_labels(segmenter.segment(batch), batch, len(segmenter.class_names))
            labels = torch.from_numpy(np.ascontiguousarray(host, dtype=np.int32)).to(self.device)
        _check_device_labels(labels, 1, *image.shape[:2])
        self._sync_stage()
        return labels

    def _frame(self, image: np.ndarray | StagedFrame, clock: StageClock) -> tuple[np.ndarray, torch.Tensor]:
        """Host pixels and the device frame (3 x H x W uint8): a staged frame's, after its copy, or
        one copy now on the current stream, from pinned memory on a GPU."""
        if isinstance(image, StagedFrame):
            return claim(image, self.device, self._main_stream())
        with clock.measure("masking"):
            frame = stage_frame(image, self.device, None).tensor
            self._sync_stage()
        return image, frame

    def _device_masks(self, masks: MaskSet, clock: StageClock) -> torch.Tensor:
        """K x H x W bool visibility on the device, uploaded once per mask set (kept by identity)."""
        cached = self._masks.get(id(masks))
        if cached is not None and cached[0] is masks:
            self._masks.move_to_end(id(masks))
            return cached[1]
        with clock.measure("masking"):
            tensor = torch.from_numpy(np.array(masks.visible, dtype=bool)).to(self.device)
        self._masks[id(masks)] = (masks, tensor)  # holding the MaskSet keeps its id unique
        while len(self._masks) > _MASK_CACHE_SIZE:
            self._masks.popitem(last=False)
        return tensor

    def _download(self, parts: list[torch.Tensor], bad: torch.Tensor, shapes: list[torch.Size],
                  clock: StageClock) -> list[np.ndarray]:
        """One device-to-host copy of ``parts`` (int32 / bool) and the range check; numpy views."""
        with clock.measure("aggregation"):
            flat = [p.contiguous().view(torch.uint8).reshape(-1) for p in parts]
            flat.append(bad.reshape(1).to(torch.uint8))
            packed = torch.cat(flat)
            host = torch.empty(packed.shape, dtype=torch.uint8, pin_memory=self.device.type == "cuda")
            host.copy_(packed, non_blocking=True)
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
            buffer = host.numpy()
        if buffer[-1]:
            raise EngineError("segmenter returned labels outside its classes")
        arrays, offset = [], 0
        for part, shape in zip(parts, shapes, strict=True):
            dtype = np.dtype(bool) if part.dtype == torch.bool else np.dtype(np.int32)
            size = math.prod(shape) * dtype.itemsize
            arrays.append(buffer[offset:offset + size].view(dtype).reshape(tuple(shape)))
            offset += size
        return arrays

    def _main_stream(self) -> torch.cuda.Stream | None:
        return torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None

    def _device_scope(self) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()

    def _sync_stage(self) -> None:
        if self.sync_stages and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
