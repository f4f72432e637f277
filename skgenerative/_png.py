"""A minimal grayscale PNG writer (no imaging dependency), for the demo's sample grid.

Rows of the grid are labelled with a built-in 5x7 bitmap font (descenders below), so
the picture says which model drew which row without an imaging or plotting library.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache

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


def tile(images: list[np.ndarray], rows: int, cols: int, pad: int = 1, scale: int = 4,
         labels: list[str] | None = None, label_scale: int = 2) -> np.ndarray:
    """Tile equally sized 2-D images into a grid (row-major), upscaled by ``scale``.

    ``labels``: one string per grid row, written in black on white in a column to the
    left of the row, vertically centred, with glyphs ``label_scale`` pixels per dot.
    """
    h, w = images[0].shape
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad))
    for index, image in enumerate(images[: rows * cols]):
        r, c = divmod(index, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = image
    grid = np.kron(grid, np.ones((scale, scale)))
    if labels is None:
        return grid
    if len(labels) != rows:
        raise ValueError(f"tile got {len(labels)} labels for {rows} rows; give one label per row.")
    inks = [np.kron(text(label), np.ones((label_scale, label_scale))) for label in labels]
    margin = 3 * label_scale
    column = np.ones((grid.shape[0], max(ink.shape[1] for ink in inks) + 2 * margin))
    row_height = (h + pad) * scale
    for r, ink in enumerate(inks):
        top = pad * scale + r * row_height + (h * scale - ink.shape[0]) // 2
        column[top : top + ink.shape[0], margin : margin + ink.shape[1]] = 1.0 - ink
    return np.hstack([column, grid])


def text(label: str) -> np.ndarray:
    """``label`` drawn in the built-in font: an array of 0 (paper) and 1 (ink), 9 dots high.

    Each glyph is 5 dots wide with one blank column between glyphs; capitals and
    digits are 7 dots high, and descenders (g, j, p, q, y, comma) use the two rows below.
    """
    glyphs = _glyphs()
    unknown = sorted(set(label) - set(glyphs))
    if unknown:
        raise ValueError(f"The demo's PNG font has no glyph for {unknown} in {label!r}; "
                         f"it draws {''.join(sorted(glyphs))} and space.")
    if not label:
        return np.zeros((_GLYPH_HEIGHT, 0))
    columns = []
    for char in label:
        columns += [glyphs[char], np.zeros((_GLYPH_HEIGHT, 1))]
    return np.hstack(columns[:-1])


_GLYPH_HEIGHT = 9

# One glyph a line: the character, then its rows from the top ('#' ink, '.' paper);
# rows not given are blank. Drawn for this file (public domain).
_FONT = """
A .###. #...# #...# ##### #...# #...# #...#
B ####. #...# #...# ####. #...# #...# ####.
C .###. #...# #.... #.... #.... #...# .###.
D ####. #...# #...# #...# #...# #...# ####.
E ##### #.... #.... ####. #.... #.... #####
F ##### #.... #.... ####. #.... #.... #....
G .###. #...# #.... #.### #...# #...# .###.
H #...# #...# #...# ##### #...# #...# #...#
I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
J ..### ...#. ...#. ...#. ...#. #..#. .##..
K #...# #..#. #.#.. ##... #.#.. #..#. #...#
L #.... #.... #.... #.... #.... #.... #####
M #...# ##.## #.#.# #.#.# #...# #...# #...#
N #...# #...# ##..# #.#.# #..## #...# #...#
O .###. #...# #...# #...# #...# #...# .###.
P ####. #...# #...# ####. #.... #.... #....
Q .###. #...# #...# #...# #.#.# #..#. .##.#
R ####. #...# #...# ####. #.#.. #..#. #...#
S .#### #.... #.... .###. ....# ....# ####.
T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
U #...# #...# #...# #...# #...# #...# .###.
V #...# #...# #...# #...# #...# .#.#. ..#..
W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
X #...# #...# .#.#. ..#.. .#.#. #...# #...#
Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
Z ##### ....# ...#. ..#.. .#... #.... #####
a ..... ..... .###. ....# .#### #...# .####
b #.... #.... #.##. ##..# #...# #...# ####.
c ..... ..... .###. #.... #.... #...# .###.
d ....# ....# .##.# #..## #...# #...# .####
e ..... ..... .###. #...# ##### #.... .###.
f ..##. .#..# .#... ###.. .#... .#... .#...
g ..... ..... .#### #...# #...# #...# .#### ....# .###.
h #.... #.... #.##. ##..# #...# #...# #...#
i ..#.. ..... .##.. ..#.. ..#.. ..#.. .###.
j ...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..
k #.... #.... #..#. #.#.. ##... #.#.. #..#.
l .##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
m ..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#
n ..... ..... #.##. ##..# #...# #...# #...#
o ..... ..... .###. #...# #...# #...# .###.
p ..... ..... ####. #...# #...# #...# ####. #.... #....
q ..... ..... .#### #...# #...# #...# .#### ....# ....#
r ..... ..... #.##. ##..# #.... #.... #....
s ..... ..... .#### #.... .###. ....# ####.
t .#... .#... ###.. .#... .#... .#..# ..##.
u ..... ..... #...# #...# #...# #..## .##.#
v ..... ..... #...# #...# #...# .#.#. ..#..
w ..... ..... #...# #...# #.#.# #.#.# .#.#.
x ..... ..... #...# .#.#. ..#.. .#.#. #...#
y ..... ..... #...# #...# #...# #...# .#### ....# .###.
z ..... ..... ##### ...#. ..#.. .#... #####
0 .###. #...# #..## #.#.# ##..# #...# .###.
1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.
2 .###. #...# ....# ...#. ..#.. .#... #####
3 ##### ...#. ..#.. ...#. ....# #...# .###.
4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
5 ##### #.... ####. ....# ....# #...# .###.
6 ..##. .#... #.... ####. #...# #...# .###.
7 ##### ....# ...#. ..#.. .#... .#... .#...
8 .###. #...# #...# .###. #...# #...# .###.
9 .###. #...# #...# .#### ....# ...#. .##..
- ..... ..... ..... .###. ..... ..... .....
. ..... ..... ..... ..... ..... ..... ..#..
, ..... ..... ..... ..... ..... ..#.. ..#.. .#...
: ..... ..... ..#.. ..... ..... ..#.. .....
( ...#. ..#.. .#... .#... .#... ..#.. ...#.
) .#... ..#.. ...#. ...#. ...#. ..#.. .#...
/ ....# ...#. ...#. ..#.. .#... .#... #....
= ..... ..... ##### ..... ##### ..... .....
"""


@cache
def _glyphs() -> dict[str, np.ndarray]:
    glyphs = {" ": np.zeros((_GLYPH_HEIGHT, 5))}
    for line in _FONT.strip().splitlines():
        char, *rows = line.split()
        rows += ["....."] * (_GLYPH_HEIGHT - len(rows))
        glyphs[char] = np.array([[dot == "#" for dot in row] for row in rows], dtype=float)
    return glyphs
