"""PixCorr, SSIM and correlation distance: hand-computed values, identical images, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import correlation

from brainldm.evaluation.metrics import correlation_distance, pixcorr, pixel_scores, ssim, to_gray


def test_pixcorr_by_hand():
    # deviations (-1.5, -0.5, 0.5, 1.5) and (-1.75, -0.75, 0.25, 2.25): 6.5 / sqrt(5 * 8.75)
    a, b = np.array([[0, 1], [2, 3]]), np.array([[0, 1], [2, 4]])
    assert pixcorr(a, b) == pytest.approx(6.5 / np.sqrt(5 * 8.75))


def test_ssim_of_flat_images_by_hand():
    # no variance anywhere: only the luminance term, (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2
    value = ssim(np.full((16, 16), 0.5), np.full((16, 16), 0.25))
    assert value == pytest.approx((2 * 0.5 * 0.25 + 1e-4) / (0.5**2 + 0.25**2 + 1e-4))


def _ssim_reference(x, y, sigma=1.5):
    """SSIM written out pixel by pixel: explicit 11 x 11 Gaussian weights over each window."""
    radius = int(3.5 * sigma + 0.5)
    d = np.arange(-radius, radius + 1)
    w = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))
    w /= w.sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(radius, x.shape[0] - radius):
        for j in range(radius, x.shape[1] - radius):
            px = x[i - radius:i + radius + 1, j - radius:j + radius + 1]
            py = y[i - radius:i + radius + 1, j - radius:j + radius + 1]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return np.mean(values)


def test_ssim_matches_the_written_out_formula(rng):
    x = rng.uniform(size=(15, 14))
    y = np.clip(x + rng.normal(scale=0.2, size=x.shape), 0, 1)
    assert ssim(x, y) == pytest.approx(_ssim_reference(x, y), abs=1e-10)
    assert ssim(x, y) == pytest.approx(ssim(y, x)) and ssim(x, y) < 0.95


def test_gray_is_luma():
    np.testing.assert_allclose(to_gray(np.eye(3)), [0.2125, 0.7154, 0.0721])


def test_correlation_distance_by_hand(rng):
    # r([1, 2, 3], [1, 3, 2]) = 0.5
    assert correlation_distance(np.array([[1.0, 2, 3]]), np.array([[1.0, 3, 2]]))[0] == pytest.approx(0.5)
    a, b = rng.normal(size=(3, 20)), rng.normal(size=(3, 20))
    np.testing.assert_allclose(correlation_distance(a, b), [correlation(x, y) for x, y in zip(a, b)], atol=1e-6)


def test_identical_images_score_one(rng):
    images = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    pix, sim = pixel_scores(images, images, size=40)
    np.testing.assert_allclose(pix, 1.0)
    np.testing.assert_allclose(sim, 1.0)


def test_pixel_sizes_may_differ_image_counts_may_not(rng):
    small = rng.integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    large = rng.integers(0, 256, size=(2, 48, 48, 3), dtype=np.uint8)
    assert pixel_scores(small, large, size=24)[0].shape == (2,)
    with pytest.raises(ValueError, match="image sets of different sizes: 2 originals, 1 reconstructions"):
        pixel_scores(small, large[:1], size=24)


def test_bad_shapes():
    with pytest.raises(ValueError, match="image sets of different sizes"):
        pixcorr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="at least 11 pixels"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
