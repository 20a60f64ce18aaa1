"""Fuzz a running node with malformed raw and compressed images; count answers, crashes and RSS.

Half the messages go to a node subscribed to raw ``sensor_msgs/Image``, half to a node with
``input_transport: compressed``; one valid frame in every ``--valid-every`` checks that the node
still certifies. Messages are sent one at a time and each answer (the ``~/alert`` status) is
awaited, up to ``--answer-timeout`` seconds, so every message is accounted for: answered by error
code, or unanswered. Prints per-kind counts, answer latency for decompression bombs, the node's
RSS (start, highest sampled, end, peak VmHWM) and whether it crashed (target: 0 crashes).

Everything runs on loopback on a private ROS domain (LOCALHOST discovery); bounded by ``--count``.

Usage::

    .venv/bin/python benchmarks/bench_fuzz.py [--count 10000] [--segmenter colour|default]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.node_harness import ERROR_NAMES, NodeUnderTest, code_summary, pct, scene

Message = tuple[str, Callable[[NodeUnderTest], int]]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="messages in all (default 10000)")
    parser.add_argument("--segmenter", choices=("colour", "default"), default="colour",
                        help="colour: a cheap rule (input handling dominates); default: packaged model")
    parser.add_argument("--valid-every", type=int, default=200, help="one valid frame per N messages")
    parser.add_argument("--answer-timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _jpeg(image: np.ndarray, progressive: bool = False) -> bytes:
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return data.tobytes()


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image[..., ::-1])
    assert ok
    return data.tobytes()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_bomb(base: bytes, height: int = 20000, width: int = 20000) -> bytes:
    """``base`` with 70 KB of COM/APP1 segments after SOI and a SOF declaring height x width."""
    padded = base[:2] + _segment(0xFE, b"c" * 65000) + _segment(0xE1, b"x" * 5000) + base[2:]
    at = max(padded.find(b"\xff\xc0"), padded.find(b"\xff\xc2")) + 2
    return padded[:at + 3] + struct.pack(">HH", height, width) + padded[at + 7:]


def png_bomb(base: bytes, size: int = 100000) -> bytes:
    """A PNG whose IHDR (valid CRC) declares size x size RGB pixels."""
    body = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return base[:8] + struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) \
        + base[33:]


def _raw(height: int, width: int, encoding: str, step: int, data: bytes) -> Callable[[NodeUnderTest], int]:
    return lambda node: node.raw(height, width, encoding, step, data)


def _compressed(fmt: str, data: bytes) -> Callable[[NodeUnderTest], int]:
    return lambda node: node.compressed(fmt, data)


def raw_messages(rng: np.random.Generator) -> Iterator[Message]:
    """Endless malformed raw images, by kind."""
    good = scene(48, 64).tobytes()
    encodings = ["", "yuv422", "16UC1", "32FC1", "rgb16", "RGB8 ", "bayer_rggb8"]
    while True:
        kind = int(rng.integers(0, 8))
        h, w = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        if kind == 0:
            yield "bad_encoding", _raw(48, 64, str(rng.choice(encodings)), 192, good)
        elif kind == 1:
            yield "zero_size", _raw(0, 64, "rgb8", 192, good) if h % 2 else _raw(48, 0, "rgb8", 0, good)
        elif kind == 2:
            yield "step_too_small", _raw(h, w, "rgb8", max(0, w * 3 - 1 - h % 3), bytes(h * w * 3))
        elif kind == 3:
            yield "data_too_short", _raw(h, w, "bgr8", w * 3, bytes(max(0, h * w * 3 - 1)))
        elif kind == 4:
            yield "huge_dims", _raw(60000 + h, 60000, "rgb8", 180000, good)
        elif kind == 5:
            yield "huge_step", _raw(48, 64, "rgb8", 1 << 30, good)
        elif kind == 6:
            data = rng.integers(0, 256, size=int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()
            yield "random_fields", _raw(h, w, "mono8", w + h % 5, data)
        else:
            yield "rgba_short_rows", _raw(h, w, "rgba8", w * 4, bytes(h * w * 3))


def compressed_messages(rng: np.random.Generator) -> Iterator[Message]:
    """Endless malformed compressed images, by kind."""
    base = scene(48, 64)
    jpg, prog, png = _jpeg(base), _jpeg(base, progressive=True), _png(base)
    bombs = [jpeg_bomb(jpg), jpeg_bomb(prog), png_bomb(png)]
    bmp = cv2.imencode(".bmp", base)[1].tobytes()
    while True:
        kind = int(rng.integers(0, 8))
        if kind == 0:
            data = rng.integers(0, 256, size=int(rng.integers(0, 5000)), dtype=np.uint8).tobytes()
            yield "random_bytes", _compressed("jpeg", data)
        elif kind == 1:
            source = (jpg, png)[int(rng.integers(0, 2))]
            yield "truncated", _compressed("jpeg", source[:int(rng.integers(0, len(source)))])
        elif kind == 2:
            flipped = bytearray((jpg, prog)[int(rng.integers(0, 2))])
            for _ in range(int(rng.integers(1, 20))):
                flipped[int(rng.integers(0, len(flipped)))] = int(rng.integers(0, 256))
            yield "bit_flipped_jpeg", _compressed("jpeg", bytes(flipped))
        elif kind == 3:
            bomb = bombs[int(rng.integers(0, 3))]
            yield "bomb", _compressed("png" if bomb[:4] == b"\x89PNG" else "jpeg", bomb)
        elif kind == 4:
            yield "empty", _compressed("jpeg", b"")
        elif kind == 5:
            yield "wrong_format", _compressed(str(rng.choice(["bmp", "tiff", "", "webp"])), jpg)
        elif kind == 6:
            yield "other_container", _compressed("jpeg", bmp)
        else:
            header = bytearray(png)
            header[int(rng.integers(8, 33))] ^= 0xFF
            yield "png_bad_header", _compressed("png", bytes(header))


def fuzz(compressed: bool, count: int, args: argparse.Namespace) -> dict[str, object]:
    params = {"demasker": "telea", "threads": "1", "publish_overlay": "false", "frame_timeout": "10.0",
              "input_qos": "reliable", "input_qos_depth": "10",
              "input_transport": "compressed" if compressed else "raw"}
    if args.segmenter == "colour":
        params["segmenter_plugin"] = "demasked_ros.apps.node.demo:fallback_segmenter"
    node = NodeUnderTest(params, compressed=compressed, reliable=True)
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    bomb_latency: list[float] = []
    rss_samples: list[float] = []
    try:
        if not node.wait_ready():
            raise SystemExit("bench_fuzz: the node did not start")
        valid_frame = scene(48, 64, seed=1)
        valid = _compressed("jpeg", _jpeg(valid_frame)) if compressed else \
            _raw(48, 64, "rgb8", 64 * 3, valid_frame.tobytes())
        rss_start = node.memory_mb()[0]
        source = compressed_messages(np.random.default_rng(args.seed + 1)) if compressed else \
            raw_messages(np.random.default_rng(args.seed))
        for index in range(count):
            if node.crashed:
                break
            if index % args.valid_every == 0:
                kind, send = "valid", valid
            else:
                kind, send = next(source)
            answer = node.request(partial(send, node), args.answer_timeout)
            if answer is None:
                per_kind[kind]["no_answer"] += 1
                continue
            latency, status = answer
            per_kind[kind][ERROR_NAMES.get(int(status.error_code), str(status.error_code))] += 1
            if kind == "bomb":
                bomb_latency.append(latency * 1000.0)
            if index % 250 == 0:
                rss_samples.append(node.memory_mb()[0])
        rss_end, peak = node.memory_mb()
        crashed = node.crashed
    finally:
        code = node.close()
    return {"per_kind": per_kind, "bomb_ms": bomb_latency, "rss": (rss_start, max(rss_samples, default=0.0),
            rss_end, peak), "crashed": crashed, "exit_code": code, "codes": node.codes}


def main() -> int:
    args = parse()
    start = time.monotonic()
    half = args.count // 2
    results = {"raw": fuzz(False, args.count - half, args), "compressed": fuzz(True, half, args)}
    print(f"bench_fuzz: {args.count} messages ({args.count - half} raw, {half} compressed), "
          f"one valid frame per {args.valid_every}, {time.monotonic() - start:.0f} s, "
          f"segmenter={args.segmenter}")
    crashes = 0
    for name, result in results.items():
        per_kind = result["per_kind"]
        assert isinstance(per_kind, dict)
        rss = result["rss"]
        assert isinstance(rss, tuple)
        crashes += int(bool(result["crashed"]))
        print(f"  [{name}] answers by code: {code_summary(result['codes'])}  "  # type: ignore[arg-type]
              f"crashed: {result['crashed']} (exit code {result['exit_code']})")
        for kind in sorted(per_kind):
            print(f"    {kind:18s} " + " ".join(f"{k}={v}" for k, v in sorted(per_kind[kind].items())))
        print(f"    node RSS MB: start {rss[0]:.0f}  highest sampled {rss[1]:.0f}  end {rss[2]:.0f}  "
              f"peak (VmHWM) {rss[3]:.0f}")
        bombs = result["bomb_ms"]
        assert isinstance(bombs, list)
        if bombs:
            print(f"    bomb answer latency ms (client, incl. transport): p50 {pct(bombs, 50):.1f}  "
                  f"p95 {pct(bombs, 95):.1f}  max {max(bombs):.1f}  (n={len(bombs)})")
    print(f"  crashes: {crashes}  (target 0)")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
