"""The demo's PNG writer and its row labels (no imaging dependency)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from skgenerative._png import _glyphs, text, tile, write_png


def _read(path):
    data = path.read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    raw = zlib.decompress(data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8])
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width + 1)[:, 1:]


def test_write_png_round_trips_8_bit_gray(tmp_path):
    image = np.linspace(0, 1, 35).reshape(5, 7)
    write_png(tmp_path / "g.png", image)
    np.testing.assert_array_equal(_read(tmp_path / "g.png"), (image * 255).round())


def test_text_draws_5_dot_glyphs_one_dot_apart():
    ink = text("Ab")
    assert ink.shape == (9, 11) and not ink[:, 5].any()
    np.testing.assert_array_equal(ink[:, :5], _glyphs()["A"])
    # A's crossbar and b's bowl, as drawn in the font table
    assert ink[3, :5].all() and ink[:7, 6].all() and not ink[:2, 7:].any()
    assert text("").shape == (9, 0)


def test_every_glyph_differs_and_the_model_names_are_covered():
    glyphs = _glyphs()
    shapes = {glyph.tobytes() for glyph in glyphs.values()}
    assert len(shapes) == len(glyphs)
    for name in ("GaussianMixtureDensity", "PPCADensity", "VariationalAutoencoder", "FlowVAE",
                 "BernoulliRBM", "GenerativeImputer (k=2)"):
        assert text(name).any()


def test_an_unknown_character_is_named():
    with pytest.raises(ValueError, match=r"no glyph for \['é'\] in 'café'"):
        text("café")


def test_tile_writes_each_label_left_of_its_row():
    images = [np.zeros((8, 8)), np.full((8, 8), 0.5)]
    plain = tile(images, rows=2, cols=1)
    labelled = tile(images, rows=2, cols=1, labels=["Ab", "x"])
    # the images are unchanged, right of a white label column
    np.testing.assert_array_equal(labelled[:, -plain.shape[1] :], plain)
    column = labelled[:, : labelled.shape[1] - plain.shape[1]]
    for row, label in enumerate(["Ab", "x"]):
        ink = np.kron(text(label), np.ones((2, 2)))
        top = 4 + row * 36 + (32 - ink.shape[0]) // 2  # centred on the row's 32 image pixels
        np.testing.assert_array_equal(column[top : top + ink.shape[0], 6 : 6 + ink.shape[1]], 1 - ink)
    assert (column == 1).sum() + sum(text(label).sum() * 4 for label in ["Ab", "x"]) == column.size
    with pytest.raises(ValueError, match="3 labels for 2 rows"):
        tile(images, rows=2, cols=1, labels=["a", "b", "c"])
