"""Procedural renderers of stained blood cells for the demo databases (pure, no I/O).

Every renderer takes a ``numpy.random.Generator`` and a diameter in pixels and returns a
``Cell``: a float32 BGR colour patch (0-255), a float32 coverage ``alpha`` in [0, 1] and a
float32 ``nucleus`` coverage, all of the same (h, w) shape, with the cell centred in the patch.
``paste`` composites a cell onto a float32 BGR canvas at a top-left corner (x, y) in pixels.
Colours below are written as BGR tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PLASMA_LISC = (228, 214, 232)
PLASMA_IUMC = (170, 214, 226)
PLASMA_MAMIC = (222, 220, 228)
RBC = (165, 150, 226)
RING = (180, 90, 120)
CHROMATIN = (110, 20, 95)
NUCLEUS = (125, 45, 95)
NEUT_CYTO = (205, 178, 218)
EOS_CYTO = (170, 180, 236)
EOS_GRANULE = (60, 105, 225)
BASO_GRANULE = (80, 25, 55)
LYMPH_NUCLEUS = (110, 30, 70)
LYMPH_CYTO = (232, 196, 165)
MONO_NUCLEUS = (150, 85, 120)
MONO_CYTO = (210, 185, 180)
PLATELET = (175, 110, 150)
PLATELET_GRANULE = (120, 40, 100)

WBC_TYPES = ("Eosinophil", "Basophil", "Neutrophil", "Lymphocytes", "Monocytes")
WBC_DIAMETER = {"Eosinophil": (0.85, 1.0), "Basophil": (0.75, 0.9), "Neutrophil": (0.8, 0.95),
                "Lymphocytes": (0.62, 0.76), "Monocytes": (0.9, 1.0)}
"""Diameter range per WBC type as a share of the database's largest WBC."""


@dataclass
class Cell:
    """A rendered cell: colour (h, w, 3) BGR float32 0-255, alpha and nucleus (h, w) 0-1."""

    colour: np.ndarray
    alpha: np.ndarray
    nucleus: np.ndarray


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] of shape (h, w): a cells x cells grid, resized cubic."""
    grid = rng.uniform(-1, 1, (cells + 2, cells + 2)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), -1, 1)


def blob(shape: tuple[int, int], centre: tuple[float, float], radii: tuple[float, float],
         rng: np.random.Generator, wobble: float, angle: float = 0.0) -> np.ndarray:
    """Anti-aliased coverage (h, w) of an ellipse with a smooth random radial wobble."""
    theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += wobble / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    x = radii[0] * r * np.cos(theta)
    y = radii[1] * r * np.sin(theta)
    ca, sa = np.cos(angle), np.sin(angle)
    pts = np.stack([centre[0] + ca * x - sa * y, centre[1] + sa * x + ca * y], axis=1)
    img = np.zeros(shape, np.uint8)
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return img.astype(np.float32) / 255


def layer(colour: np.ndarray, alpha: np.ndarray, tint: tuple[int, int, int],
          strength: np.ndarray | float = 1.0) -> None:
    """Paint ``tint`` over ``colour`` in place where ``alpha`` (times strength) covers."""
    a = (alpha * strength)[..., None]
    colour *= 1 - a
    colour += a * np.asarray(tint, np.float32)


def dots(shape: tuple[int, int], rng: np.random.Generator, region: np.ndarray, n: int,
         radius: tuple[float, float]) -> np.ndarray:
    """Coverage of ``n`` small discs (radius range in px) at random points of ``region`` > 0.5."""
    ys, xs = np.nonzero(region > 0.5)
    out = np.zeros(shape, np.uint8)
    if len(xs) == 0:
        return out.astype(np.float32)
    pick = rng.integers(0, len(xs), n)
    for x, y, r in zip(xs[pick], ys[pick], rng.uniform(*radius, n)):
        cv2.circle(out, (int(x) * 4, int(y) * 4), max(1, int(r * 4)), 255, -1, cv2.LINE_AA,
                   shift=2)
    return out.astype(np.float32) / 255


def textured(shape: tuple[int, int], tint: tuple[int, int, int], rng: np.random.Generator,
             amount: float, cells: int = 6) -> np.ndarray:
    """A (h, w, 3) float colour field of ``tint`` with smooth brightness variation."""
    h, w = shape
    n = smooth_noise(rng, h, w, cells)[..., None]
    return np.asarray(tint, np.float32) * (1 + amount * n)


def rbc(rng: np.random.Generator, diameter: float, infected: bool = False) -> Cell:
    """A red blood cell: pale pink disc with central pallor; ring forms or dots if infected."""
    side = int(diameter * 1.15) + 4
    shape = (side, side)
    c = (side / 2, side / 2)
    r = diameter / 2 * rng.uniform(0.94, 1.0, 2)
    alpha = blob(shape, c, tuple(r), rng, 0.05, rng.uniform(0, np.pi))
    colour = textured(shape, RBC, rng, 0.04)
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    dist = np.hypot(xx - c[0], yy - c[1]) / (diameter / 2)
    pallor = np.exp(-((dist / rng.uniform(0.35, 0.5)) ** 2)) * rng.uniform(0.35, 0.6)
    layer(colour, np.ones(shape, np.float32), (238, 232, 245), pallor)
    layer(colour, np.clip((dist - 0.75) * 4, 0, 1) * alpha, (140, 120, 205), 0.35)
    if infected:
        add_parasites(colour, alpha, rng, diameter)
    elif rng.random() < 0.2:
        layer(colour, dots(shape, rng, alpha, 1, (0.03 * diameter, 0.05 * diameter)),
              (175, 160, 200), 0.5)
    return Cell(colour, alpha, np.zeros(shape, np.float32))


def add_parasites(colour: np.ndarray, alpha: np.ndarray, rng: np.random.Generator,
                  diameter: float) -> None:
    """Paint 1-3 ring forms (ring + chromatin dot), dots or a trophozoite inside ``alpha``."""
    shape = alpha.shape
    inner = cv2.erode((alpha > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8),
                      iterations=max(1, int(diameter * 0.18)))
    ys, xs = np.nonzero(inner)
    for _ in range(rng.choice([1, 1, 2, 3])):
        i = rng.integers(len(xs))
        cx, cy = int(xs[i]), int(ys[i])
        kind = rng.random()
        ring_r = max(2, int(diameter * rng.uniform(0.08, 0.13)))
        art = np.zeros(shape, np.uint8)
        if kind < 0.6:
            cv2.circle(art, (cx, cy), ring_r, 255, max(1, int(diameter / 45)), cv2.LINE_AA)
            layer(colour, art.astype(np.float32) / 255, RING, 0.9)
            ang = rng.uniform(0, 2 * np.pi)
            cx, cy = int(cx + ring_r * np.cos(ang)), int(cy + ring_r * np.sin(ang))
        elif kind < 0.8:
            troph = blob(shape, (cx, cy), (ring_r * 1.6, ring_r * 1.2), rng, 0.4)
            layer(colour, troph, RING, 0.85)
        art[:] = 0
        cv2.circle(art, (cx, cy), max(1, int(diameter * rng.uniform(0.03, 0.05))), 255, -1,
                   cv2.LINE_AA)
        layer(colour, art.astype(np.float32) / 255, CHROMATIN, 0.95)


def nucleus_shape(rng: np.random.Generator, kind: str, shape: tuple[int, int],
                  c: tuple[float, float], r: float) -> np.ndarray:
    """Coverage of the nucleus of a WBC of type ``kind`` and cell radius ``r`` px."""
    if kind == "Neutrophil":
        n = int(rng.integers(3, 6))
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.linspace(0, rng.uniform(1.4, 2.2) * np.pi / 1.2, n)
        rad = r * rng.uniform(0.35, 0.45)
        pts = [(c[0] + rad * np.cos(a), c[1] + rad * np.sin(a)) for a in angles]
        nuc = np.zeros(shape, np.float32)
        for p in pts:
            nuc = np.maximum(nuc, blob(shape, p, (r * 0.22, r * 0.18), rng, 0.2,
                                       rng.uniform(0, np.pi)))
        strands = np.zeros(shape, np.uint8)
        for p, q in zip(pts, pts[1:]):
            cv2.line(strands, tuple(map(int, p)), tuple(map(int, q)), 255,
                     max(1, int(r * 0.06)), cv2.LINE_AA)
        return np.maximum(nuc, strands.astype(np.float32) / 255)
    if kind == "Eosinophil":
        a = rng.uniform(0, np.pi)
        off = r * 0.32 * np.array([np.cos(a), np.sin(a)])
        lobes = [blob(shape, (c[0] + s * off[0], c[1] + s * off[1]), (r * 0.3, r * 0.24), rng,
                      0.15, a + np.pi / 2) for s in (-1, 1)]
        return np.maximum(*lobes)
    if kind == "Lymphocytes":
        dx, dy = rng.uniform(-0.08, 0.08, 2) * r
        return blob(shape, (c[0] + dx, c[1] + dy), (r * 0.8, r * 0.76), rng, 0.08)
    if kind == "Monocytes":
        a = rng.uniform(0, 2 * np.pi)
        big = blob(shape, c, (r * 0.68, r * 0.5), rng, 0.12, a)
        notch_c = (c[0] + r * 0.45 * np.cos(a + np.pi / 2), c[1] + r * 0.45 * np.sin(a + np.pi / 2))
        notch = blob(shape, notch_c, (r * 0.38, r * 0.3), rng, 0.1, a)
        return np.clip(big - notch, 0, 1)
    return blob(shape, c, (r * 0.55, r * 0.5), rng, 0.2, rng.uniform(0, np.pi))  # Basophil


def wbc(rng: np.random.Generator, kind: str, diameter: float) -> Cell:
    """A white blood cell of type ``kind`` (one of WBC_TYPES), ``diameter`` px across."""
    side = int(diameter * 1.15) + 4
    shape = (side, side)
    c = (side / 2, side / 2)
    r = diameter / 2
    alpha = blob(shape, c, (r, r * rng.uniform(0.9, 1.0)), rng, 0.06, rng.uniform(0, np.pi))
    cyto = {"Eosinophil": EOS_CYTO, "Basophil": NEUT_CYTO, "Neutrophil": NEUT_CYTO,
            "Lymphocytes": LYMPH_CYTO, "Monocytes": MONO_CYTO}[kind]
    colour = textured(shape, cyto, rng, 0.05, 8)
    nuc = nucleus_shape(rng, kind, shape, c, r) * alpha
    if kind == "Eosinophil":  # granules first: the two lobes stay visible on top
        n = int(diameter * diameter / 30)
        layer(colour, dots(shape, rng, alpha, n, (r * 0.03, r * 0.055)), EOS_GRANULE, 0.6)
    ntint = {"Lymphocytes": LYMPH_NUCLEUS, "Monocytes": MONO_NUCLEUS}.get(kind, NUCLEUS)
    chroma = 0.85 + 0.15 * smooth_noise(rng, side, side, 14 if kind == "Monocytes" else 9)
    layer(colour, nuc, ntint, chroma)
    if kind == "Basophil":
        n = int(diameter * diameter / 70)
        layer(colour, dots(shape, rng, alpha, n, (r * 0.03, r * 0.065)), BASO_GRANULE, 0.85)
    elif kind == "Neutrophil":
        fine = dots(shape, rng, alpha, int(diameter * diameter / 25), (0.6, 1.0))
        layer(colour, fine, (190, 160, 215), 0.4)
    elif kind == "Monocytes" and rng.random() < 0.7:
        vac = dots(shape, rng, alpha * (1 - nuc), int(rng.integers(2, 7)), (r * 0.05, r * 0.1))
        layer(colour, vac, (235, 225, 230), 0.8)
    return Cell(colour, alpha, nuc)


def platelet(rng: np.random.Generator, diameter: float) -> Cell:
    """A thrombocyte: small irregular purple fragment with dark granules."""
    side = int(diameter * 1.3) + 4
    shape = (side, side)
    alpha = blob(shape, (side / 2, side / 2), (diameter / 2, diameter / 2 * rng.uniform(0.6, 1)),
                 rng, 0.3, rng.uniform(0, np.pi))
    colour = textured(shape, PLATELET, rng, 0.08, 4)
    n = max(3, int(diameter * diameter / 20))
    layer(colour, dots(shape, rng, alpha, n, (0.6, max(1.0, diameter / 14))), PLATELET_GRANULE,
          0.8)
    return Cell(colour, alpha, np.zeros(shape, np.float32))


def clump(rng: np.random.Generator, length: float, platelet_d: tuple[float, float]) -> Cell:
    """A platelet clump: 3-10 platelets along an irregular elongated cluster ``length`` px long."""
    side = int(length * 1.2) + 8
    colour = np.zeros((side, side, 3), np.float32)
    alpha = np.zeros((side, side), np.float32)
    angle = rng.uniform(0, np.pi)
    for _ in range(int(rng.integers(3, 11))):
        t = rng.uniform(-0.5, 0.5) * (length - platelet_d[1])
        s = rng.normal(0, length * 0.12)
        p = platelet(rng, rng.uniform(*platelet_d))
        x = int(side / 2 + t * np.cos(angle) - s * np.sin(angle) - p.alpha.shape[1] / 2)
        y = int(side / 2 + t * np.sin(angle) + s * np.cos(angle) - p.alpha.shape[0] / 2)
        paste_cell(colour, alpha, p, x, y)
    return Cell(colour, alpha, np.zeros((side, side), np.float32))


def paste_cell(colour: np.ndarray, alpha: np.ndarray, cell: Cell, x: int, y: int) -> None:
    """Composite ``cell`` onto a colour canvas and its alpha at top-left (x, y), clipped."""
    h, w = cell.alpha.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, colour.shape[1]), min(y + h, colour.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    a = cell.alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    region = colour[y0:y1, x0:x1]
    region *= 1 - a[..., None]
    region += a[..., None] * cell.colour[y0 - y : y1 - y, x0 - x : x1 - x]
    alpha[y0:y1, x0:x1] = np.maximum(alpha[y0:y1, x0:x1], a)


def finish(canvas: np.ndarray, rng: np.random.Generator, blur_max: float = 1.2,
           noise: float = 3.0) -> np.ndarray:
    """Stain jitter, focus blur and sensor noise; returns the uint8 BGR image."""
    gain = rng.normal(1, 0.035, 3).astype(np.float32) * rng.uniform(0.95, 1.04)
    img = canvas * gain
    sigma = rng.uniform(0, blur_max)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
