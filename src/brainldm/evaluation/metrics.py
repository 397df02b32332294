"""Pixel and feature metrics of the community table (Brain-Diffuser, MindEye).

* PixCorr: Pearson r between the RGB pixels of original and reconstruction,
  both resized to 425 x 425 (bilinear), flattened.
* SSIM: on grayscale (ITU-R 709 luma, as ``skimage.color.rgb2gray``) at
  425 x 425; Gaussian window with sigma 1.5 (truncated at 3.5 sigma, 11 x 11),
  K1 = 0.01, K2 = 0.03, data range 1, population covariances, the mean over the
  image without the window's half-width at the borders — the settings both
  papers pass to ``skimage.metrics.structural_similarity``.
* Correlation distance: 1 - Pearson r between the features of an original and
  its reconstruction (``scipy.spatial.distance.correlation``).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .identification import standardize_rows
from .images import resize_images
from .protocols import PIXEL_SIZE
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def _same_shape(original: np.ndarray, reconstruction: np.ndarray) -> None:
    if np.shape(original) != np.shape(reconstruction):
        raise ValueError(f"image sets of different sizes: originals {np.shape(original)}, "
                         f"reconstructions {np.shape(reconstruction)}")


def pixcorr(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Pearson r between all pixel values of two images of the same shape."""
    _same_shape(original, reconstruction)
    return float(np.corrcoef(np.ravel(original), np.ravel(reconstruction))[0, 1])


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luma of RGB values in [0, 1] (last axis), as ``skimage.color.rgb2gray``."""
    return np.asarray(rgb, dtype=np.float64) @ np.array(GRAY_WEIGHTS)


def ssim(original: np.ndarray, reconstruction: np.ndarray, sigma: float = 1.5, data_range: float = 1.0) -> float:
    """Mean structural similarity of two grayscale images (2-D, same shape), Gaussian-weighted."""
    _same_shape(original, reconstruction)
    x, y = np.asarray(original, dtype=np.float64), np.asarray(reconstruction, dtype=np.float64)
    truncate = 3.5
    pad = int(truncate * sigma + 0.5)
    if x.ndim != 2 or min(x.shape) < 2 * pad + 1:
        raise ValueError(f"SSIM needs 2-D images of at least {2 * pad + 1} pixels a side, found {x.shape}")

    def blur(image):
        return gaussian_filter(image, sigma=sigma, truncate=truncate, mode="reflect")

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[pad:-pad, pad:-pad].mean())


def pixel_scores(originals: np.ndarray, reconstructions: np.ndarray, size: int = PIXEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """PixCorr and SSIM of each (original, reconstruction) pair of uint8 RGB images (B, H, W, 3).

    Both sets are resized to ``size`` x ``size`` first, so their pixel sizes may differ;
    their numbers may not.
    """
    if len(originals) != len(reconstructions):
        raise ValueError(f"image sets of different sizes: {len(originals)} originals, "
                         f"{len(reconstructions)} reconstructions")
    a = resize_images(originals, size).permute(0, 2, 3, 1).double().numpy()
    b = resize_images(reconstructions, size).permute(0, 2, 3, 1).double().numpy()
    pix = np.array([pixcorr(x, y) for x, y in zip(a, b)])
    sim = np.array([ssim(to_gray(x), to_gray(y)) for x, y in zip(a, b)])
    return pix, sim


def correlation_distance(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """1 - Pearson r between each original's features and its reconstruction's (rows, same order)."""
    _same_shape(originals, reconstructions)
    return 1.0 - np.sum(standardize_rows(originals) * standardize_rows(reconstructions), axis=1, dtype=np.float64)
