"""A minimal grayscale PNG writer (no imaging dependency), for the demo's sample grid."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png(path, image: np.ndarray) -> None:
    """Write a 2-D array of values in [0, 1] as an 8-bit grayscale PNG."""
    pixels = (np.clip(np.asarray(image, dtype=float), 0.0, 1.0) * 255).round().astype(np.uint8)
    height, width = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", header))
        f.write(_chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(_chunk(b"IEND", b""))


def tile(images: list[np.ndarray], rows: int, cols: int, pad: int = 1, scale: int = 4) -> np.ndarray:
    """Tile equally sized 2-D images into a grid (row-major), upscaled by ``scale``."""
    h, w = images[0].shape
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad))
    for index, image in enumerate(images[: rows * cols]):
        r, c = divmod(index, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    return np.kron(grid, np.ones((scale, scale)))
