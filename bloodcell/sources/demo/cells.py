"""Procedural renderers of Giemsa/Wright-stained blood cells for the demo databases (pure, no I/O).

Optical model
-------------
Cells are rendered as stain **optical density** (OD) in a bright-field microscope: the image is
``light * exp(-OD)`` per channel (Beer-Lambert), so overlapping cells darken each other and a
change of illumination or stain strength changes the colours the way it does on a real slide.

* Channel order is **BGR** everywhere (OpenCV's convention): colours, OD vectors and images.
* Sizes are in **pixels** of the image being made (a database's native scale).
* Positions are **top-left (x, y)** in pixels, x to the right, y down; ``Smear.draw(cell, x, y)``
  puts the top-left corner of the cell's patch at (x, y).

A renderer takes a ``numpy.random.Generator``, a size in pixels and a ``Stain`` (the slide's
colours, see ``Stain.sample``) and returns a ``Cell``: OD patch (h, w, 3) float32, coverage
``alpha`` (h, w) float32 in [0, 1] and ``nucleus`` coverage (zero for cells without one), the
cell centred in the patch. ``Cell.mask`` / ``Cell.nucleus_mask`` are the bool masks (coverage at
least one half). ``cell_patch`` turns a cell into a finished uint8 BGR image on plasma plus its
bool masks; ``Smear`` composes many cells on one field and ``Smear.develop`` makes the image.

Cell types: ``healthy_rbc``, ``infected_rbc`` (ring forms, dots, trophozoites), ``thrombocyte``,
``platelet_clump``, and ``wbc(kind)`` for the five WBC types (``WBC_TYPES``). All randomness comes
from the generator passed in; nothing depends on time or global state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

WBC_TYPES = ("Eosinophil", "Basophil", "Neutrophil", "Lymphocytes", "Monocytes")

WBC_DIAMETER_40X: dict[str, tuple[float, float]] = {
    "Lymphocytes": (70.0, 84.0),
    "Basophil": (74.0, 90.0),
    "Neutrophil": (78.0, 96.0),
    "Eosinophil": (80.0, 98.0),
    "Monocytes": (88.0, 105.0),
}
"""WBC diameter range (px) per type at the common 40x scale (IUMC's native scale)."""

RBC_DIAMETER_40X = (33.0, 40.0)
"""Healthy RBC diameter range (px) at the common 40x scale."""

THROMBOCYTE_40X = (15.0, 27.0)
CLUMP_LENGTH_40X = (30.0, 72.0)


def _od(bgr: tuple[float, float, float]) -> np.ndarray:
    """The optical density (BGR) of a stain that shows as colour ``bgr`` under white light."""
    return -np.log(np.asarray(bgr, np.float32) / 255.0)


# Colour of each stained structure at unit density under white light (BGR).
BASE_COLOURS: dict[str, tuple[int, int, int]] = {
    "rbc": (184, 166, 226),          # pink-red haemoglobin + eosin
    "plasma": (246, 242, 246),       # faint background stain
    "nucleus": (128, 42, 108),       # purple chromatin (azure + eosin)
    "nucleus_lymph": (112, 30, 80),  # dense dark purple
    "nucleus_mono": (150, 86, 136),  # paler lacy violet
    "neut_cyto": (226, 212, 232),    # pale pink-lilac
    "neut_granule": (200, 165, 210),
    "eos_cyto": (218, 210, 235),
    "eos_granule": (70, 118, 228),   # orange-red
    "baso_cyto": (214, 192, 222),
    "baso_granule": (72, 22, 64),    # purple-black
    "lymph_cyto": (236, 210, 186),   # sky blue
    "mono_cyto": (212, 196, 192),    # grey-blue
    "azurophil": (170, 110, 180),
    "platelet": (206, 170, 206),
    "platelet_granule": (128, 46, 124),
    "parasite": (184, 112, 152),     # blue-purple ring cytoplasm
    "chromatin": (140, 50, 150),     # dark magenta-red chromatin dot
    "pigment": (60, 86, 110),        # brown hemozoin
    "speck": (175, 165, 185),        # faint non-parasite debris
}
EOSIN = {"rbc", "eos_granule", "eos_cyto", "neut_cyto", "neut_granule", "chromatin"}
"""Structures whose colour follows the eosin (red) part of the stain; the rest follow azure."""

TONES: dict[str, dict] = {
    # light: BGR of the empty field; jitter: its per-channel range; rbc, azure, plasma: density
    # factors; colours: structures whose colour differs from BASE_COLOURS on this database
    "lisc": {"light": (234, 226, 232), "jitter": 8, "rbc": 1.0, "azure": 1.0, "plasma": 1.0,
             "colours": {}},
    "iumc": {"light": (168, 244, 250), "jitter": 10, "rbc": 0.45, "azure": 1.35, "plasma": 0.5,
             "colours": {"rbc": (190, 170, 200)}},
    "mamic": {"light": (222, 232, 222), "jitter": 10, "rbc": 1.0, "azure": 0.95, "plasma": 0.5,
              "colours": {"rbc": (180, 160, 196)}},
    "kaggle": {"light": (200, 212, 240), "jitter": 9, "rbc": 1.0, "azure": 1.1, "plasma": 0.4,
               "colours": {"rbc": (200, 190, 222)}},
    "sheet": {"light": (236, 230, 234), "jitter": 5, "rbc": 1.0, "azure": 1.0, "plasma": 0.6,
              "colours": {}},
}
"""Per-database look: LISC pale lavender, IUMC yellow (like wbc-seg-zheng2018 Dataset 1, with
ghost-like RBCs), MAMIC neutral grey-green, Kaggle warm (the NIH photos' peach light)."""


@dataclass(frozen=True)
class Stain:
    """One slide's (or photo's) colours: ``light`` (BGR, 0-255) and an OD vector per structure."""

    light: np.ndarray
    od: dict[str, np.ndarray]

    @staticmethod
    def sample(rng: np.random.Generator, tone: str = "lisc") -> Stain:
        """A stain of the given tone with random hue, saturation and brightness jitter.

        The eosin and azure parts vary independently (0.8-1.2x), each colour's hue a little
        per channel, and the light's brightness and tint per channel.
        """
        t = TONES[tone]
        light = np.asarray(t["light"], np.float32) + rng.uniform(-1, 1, 3) * t["jitter"]
        light = np.clip(light * rng.uniform(0.96, 1.03), 60, 255).astype(np.float32)
        eosin, azure = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2) * t["azure"]
        hue = np.exp(rng.normal(0, 0.07, 3)).astype(np.float32)
        od = {}
        for name, colour in {**BASE_COLOURS, **t["colours"]}.items():
            k = eosin if name in EOSIN else azure
            if name == "rbc":
                k *= t["rbc"]
            if name == "plasma":
                k = t["plasma"] * rng.uniform(0.6, 1.4)
            own = np.exp(rng.normal(0, 0.04, 3)).astype(np.float32)
            od[name] = _od(colour) * np.float32(k) * hue * own
        return Stain(light, od)


@dataclass
class Cell:
    """A rendered cell: OD (h, w, 3) BGR float32, coverage ``alpha`` and ``nucleus`` (h, w) 0-1.

    ``footprint`` is the largest distance (px) from the patch centre to a covered pixel.
    """

    od: np.ndarray
    alpha: np.ndarray
    nucleus: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Bool (h, w): the cell (coverage at least 0.5)."""
        return self.alpha >= 0.5

    @property
    def nucleus_mask(self) -> np.ndarray:
        """Bool (h, w): the nucleus (coverage at least 0.5 inside the cell)."""
        return (self.nucleus >= 0.5) & self.mask

    @property
    def footprint(self) -> float:
        ys, xs = np.nonzero(self.alpha > 0.02)
        if len(xs) == 0:
            return 0.0
        h, w = self.alpha.shape
        return float(np.sqrt(((xs + 0.5 - w / 2) ** 2 + (ys + 0.5 - h / 2) ** 2).max())) + 1


# --------------------------------------------------------------------------------------------
# primitives


def smooth_noise(rng: np.random.Generator, h: int, w: int, feature_px: float) -> np.ndarray:
    """Smooth noise of shape (h, w), roughly N(0, 0.5), with blobs about ``feature_px`` wide."""
    gh = max(2, int(np.ceil(h / feature_px)) + 2)
    gw = max(2, int(np.ceil(w / feature_px)) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(grid, (int(gw * feature_px), int(gh * feature_px)),
                     interpolation=cv2.INTER_CUBIC)
    oy = int(rng.integers(0, max(1, big.shape[0] - h + 1)))
    ox = int(rng.integers(0, max(1, big.shape[1] - w + 1)))
    out = big[oy : oy + h, ox : ox + w]
    if out.shape != (h, w):
        out = cv2.resize(big, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def outline(rng: np.random.Generator, centre: tuple[float, float], radii: tuple[float, float],
            angle: float, wobble: float, n: int = 96) -> np.ndarray:
    """Points (n, 2) of an ellipse (radii px, angle rad) with smooth low-frequency radial noise."""
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += wobble / k ** 0.8 * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    x, y = radii[0] * r * np.cos(theta), radii[1] * r * np.sin(theta)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([centre[0] + ca * x - sa * y, centre[1] + sa * x + ca * y], axis=1)


def fill(shape: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    """Anti-aliased coverage (h, w) float32 of filled polygons given in pixel coordinates."""
    img = np.zeros(shape, np.uint8)
    for p in polys:  # one at a time: fillPoly would XOR overlapping polygons
        cv2.fillPoly(img, [np.round(p * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return img.astype(np.float32) / 255


def blob(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float],
         radii: tuple[float, float], angle: float, wobble: float) -> np.ndarray:
    """Coverage of one organic ellipse (see ``outline``)."""
    return fill(shape, [outline(rng, centre, radii, angle, wobble)])


def soften(cov: np.ndarray, sigma: float) -> np.ndarray:
    """Round off a coverage map: blur, then re-threshold softly at one half (keeps area)."""
    if sigma <= 0:
        return cov
    b = cv2.GaussianBlur(cov, (0, 0), max(sigma, 0.8))
    return smoothstep(0.3, 0.7, b).astype(np.float32)


def depth(cov: np.ndarray, radius: float) -> np.ndarray:
    """Distance from the edge of ``cov >= 0.5`` divided by ``radius``: 0 at the edge, ~1 inside."""
    m = (cov >= 0.5).astype(np.uint8)
    dt = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    dt = cv2.GaussianBlur(dt, (0, 0), 1.0)  # no stair steps along the edge
    return (dt / max(radius, 1.0)).astype(np.float32)


def dots(shape: tuple[int, int], rng: np.random.Generator, where: np.ndarray, n: int,
         radius: tuple[float, float], weight: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Density (h, w) of ``n`` small anti-aliased discs at random points of ``where`` >= 0.5.

    Each disc gets a radius (px) and a weight drawn uniformly from the given ranges; where discs
    overlap the maximum weight is kept.
    """
    out = np.zeros(shape, np.float32)
    ys, xs = np.nonzero(where >= 0.5)
    if len(xs) == 0 or n <= 0:
        return out
    pick = rng.integers(0, len(xs), n)
    px = xs[pick] + rng.uniform(-0.5, 0.5, n)
    py = ys[pick] + rng.uniform(-0.5, 0.5, n)
    rs = rng.uniform(*radius, n)
    ws = rng.uniform(*weight, n)
    levels = np.round(ws * 8) / 8
    big = (shape[1] * 2, shape[0] * 2)
    for lv in np.unique(levels):  # one 2x-supersampled layer per weight level, max over levels
        layer = np.zeros((big[1], big[0]), np.uint8)
        for i in np.nonzero(levels == lv)[0]:
            cv2.circle(layer, (int((px[i] + 0.25) * 8), int((py[i] + 0.25) * 8)),
                       max(1, int(rs[i] * 8)), 255, -1, cv2.LINE_AA, shift=2)
        small = cv2.resize(layer, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        np.maximum(out, small.astype(np.float32) * (float(lv) / 255), out=out)
    return out


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    """Exact anti-aliased coverage (h, w) of a disc (centre x, y and radius in px)."""
    h, w = shape
    cx, cy = centre
    x0, x1 = max(int(cx - radius - 2), 0), min(int(cx + radius + 3), w)
    y0, y1 = max(int(cy - radius - 2), 0), min(int(cy + radius + 3), h)
    out = np.zeros(shape, np.float32)
    if x1 > x0 and y1 > y0:
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(radius + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1)
    return out


def _square(diameter: float, extra: float = 1.2) -> tuple[tuple[int, int], tuple[float, float]]:
    side = int(np.ceil(diameter * extra)) + 6
    return (side, side), (side / 2, side / 2)


def _add(od: np.ndarray, density: np.ndarray, vec: np.ndarray) -> None:
    for ch in range(3):
        od[..., ch] += density * vec[ch]


# --------------------------------------------------------------------------------------------
# red blood cells and parasites


def _rbc_body(rng: np.random.Generator, diameter: float, stain: Stain,
              pallor_range: tuple[float, float] = (0.45, 0.8),
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Coverage, OD and depth of a biconcave disc: pale pink with a lighter central pallor
    (``pallor_range``: how much lighter the centre is, 0 = not at all)."""
    shape, c = _square(diameter, 1.12)
    r = diameter / 2
    ecc = rng.uniform(0.9, 1.0) if rng.random() < 0.85 else rng.uniform(0.8, 0.9)
    alpha = blob(rng, shape, c, (r, r * ecc), rng.uniform(0, np.pi),
                 rng.uniform(0.015, 0.045))
    u = depth(alpha, r)
    pallor_w = rng.uniform(0.38, 0.58)
    pallor = rng.uniform(*pallor_range)
    off = rng.normal(0, 0.08, 2) * r  # the pallor is seldom exactly central
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    centre_d = np.hypot(xx - c[0] - off[0], yy - c[1] - off[1]) / r
    rim = rng.uniform(0.1, 0.3)  # the thick torus of the biconcave disc
    thick = smoothstep(0.0, 0.09, u) * (1 + rim * np.exp(-(((u - 0.2) / 0.14) ** 2)))
    thick *= 1 - pallor * np.exp(-((centre_d / pallor_w) ** 2))
    thick *= 1 + 0.06 * smooth_noise(rng, shape[0], shape[1], max(4.0, r / 2))
    dens = thick * alpha * rng.uniform(0.85, 1.15)
    od = np.zeros((*shape, 3), np.float32)
    _add(od, dens, stain.od["rbc"])
    return alpha, od, u, r


def healthy_rbc(rng: np.random.Generator, diameter: float, stain: Stain,
                pallor: tuple[float, float] = (0.45, 0.8)) -> Cell:
    """A healthy red blood cell ``diameter`` px across: pale pink-red disc, lighter central
    pallor, smooth edge; sometimes a faint non-parasite speck (stain debris) on it."""
    alpha, od, u, _ = _rbc_body(rng, diameter, stain, pallor)
    if rng.random() < 0.08:
        speck = dots(alpha.shape, rng, (u > 0.15).astype(np.float32), int(rng.integers(1, 3)),
                     (0.02 * diameter, 0.04 * diameter), (0.15, 0.35))
        _add(od, cv2.GaussianBlur(speck, (0, 0), 0.6), stain.od["speck"])
    return Cell(od, alpha, np.zeros_like(alpha))


def add_parasites(rng: np.random.Generator, od: np.ndarray, u: np.ndarray, diameter: float,
                  stain: Stain, count: int | None = None) -> None:
    """Paint 1-3 malaria parasites into an RBC's OD: ring forms (thin ring + chromatin dot, the
    commonest), bare chromatin dots, or a larger amoeboid trophozoite with brown pigment."""
    shape = u.shape
    inside = u > 0.12
    ys, xs = np.nonzero(inside)
    if len(xs) == 0:
        return
    n = count if count is not None else int(rng.choice([1, 1, 1, 2, 2, 3]))
    ring = np.zeros(shape, np.float32)
    chrom = np.zeros(shape, np.float32)
    pigment = np.zeros(shape, np.float32)
    big_done = False
    for _ in range(n):
        i = int(rng.integers(len(xs)))
        cx, cy = float(xs[i]), float(ys[i])
        kind = rng.random()
        dot_r = max(0.9, diameter * rng.uniform(0.03, 0.048))
        if kind < 0.62:  # ring form
            rr = max(2.0, diameter * rng.uniform(0.06, 0.11))
            th = max(1, round(diameter * rng.uniform(0.022, 0.035)))
            start = rng.uniform(0, 360)
            span = rng.uniform(250, 360)
            art = np.zeros(shape, np.uint8)
            cv2.ellipse(art, (int(cx * 16), int(cy * 16)),
                        (int(rr * 16), int(rr * rng.uniform(0.75, 1.0) * 16)),
                        rng.uniform(0, 180), start, start + span, 255, th, cv2.LINE_AA, shift=4)
            np.maximum(ring, art.astype(np.float32) / 255, out=ring)
            a = np.deg2rad(start + (span if rng.random() < 0.5 else 0))
            dots_at = [(cx + rr * np.cos(a), cy + rr * np.sin(a))]
            if rng.random() < 0.2:  # double chromatin dot ("headphone" ring)
                dots_at.append((cx - rr * np.cos(a), cy - rr * np.sin(a)))
        elif kind < 0.85 or big_done:  # compact chromatin dot with a wisp of cytoplasm
            dots_at = [(cx, cy)]
            wisp = blob(rng, shape, (cx, cy), (dot_r * 1.8, dot_r * 1.2), rng.uniform(0, np.pi),
                        0.3)
            np.maximum(ring, wisp * 0.6, out=ring)
        else:  # trophozoite: irregular amoeboid body, hemozoin grains
            big_done = True
            rr = diameter * rng.uniform(0.12, 0.2)
            body = blob(rng, shape, (cx, cy), (rr, rr * rng.uniform(0.6, 0.9)),
                        rng.uniform(0, np.pi), 0.45)
            hole = blob(rng, shape, (cx + rr * 0.2, cy), (rr * 0.35, rr * 0.3), 0, 0.2)
            np.maximum(ring, np.clip(body - 0.6 * hole, 0, 1), out=ring)
            pigment += dots(shape, rng, body, int(rng.integers(2, 6)),
                            (0.5, max(0.8, diameter * 0.015)), (0.4, 0.8))
            dots_at = [(cx - rr * 0.4, cy - rr * 0.2)]
        for (dx, dy) in dots_at:
            np.maximum(chrom, disc(shape, (dx, dy), dot_r), out=chrom)
    inside_f = inside.astype(np.float32)
    _add(od, ring * inside_f * rng.uniform(0.9, 1.3), stain.od["parasite"])
    _add(od, chrom * inside_f * rng.uniform(0.9, 1.2), stain.od["chromatin"])
    _add(od, np.clip(pigment, 0, 1) * inside_f, stain.od["pigment"])


def infected_rbc(rng: np.random.Generator, diameter: float, stain: Stain,
                 pallor: tuple[float, float] = (0.45, 0.8)) -> Cell:
    """A malaria-infected RBC ``diameter`` px across: the same pink disc carrying 1-3 small
    purple ring forms (ring + chromatin dot), dots, or sometimes a larger trophozoite."""
    alpha, od, u, _ = _rbc_body(rng, diameter, stain, pallor)
    add_parasites(rng, od, u, diameter, stain)
    return Cell(od, alpha, np.zeros_like(alpha))


def rbc(rng: np.random.Generator, diameter: float, stain: Stain, infected: bool = False,
        pallor: tuple[float, float] = (0.45, 0.8)) -> Cell:
    """``infected_rbc`` or ``healthy_rbc``."""
    return (infected_rbc if infected else healthy_rbc)(rng, diameter, stain, pallor)


# --------------------------------------------------------------------------------------------
# platelets


def _platelet_into(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float],
                   diameter: float, stain: Stain, od: np.ndarray) -> np.ndarray:
    """Draw one platelet into ``od`` (pale lilac hyalomere, dark granular centre); its coverage."""
    r = diameter / 2
    alpha = blob(rng, shape, centre, (r, r * rng.uniform(0.6, 0.95)), rng.uniform(0, np.pi),
                 rng.uniform(0.15, 0.3))
    u = depth(alpha, r)
    hyalo = alpha * (0.55 + 0.25 * smoothstep(0.0, 0.5, u))
    _add(od, hyalo * rng.uniform(0.8, 1.2), stain.od["platelet"])
    jitter = rng.normal(0, r * 0.12, 2)
    core = blob(rng, shape, (centre[0] + jitter[0], centre[1] + jitter[1]), (r * 0.6, r * 0.5),
                rng.uniform(0, np.pi), 0.3) * alpha
    n = max(4, int(diameter * diameter / 14))
    gran = dots(shape, rng, core, n, (0.5, max(0.8, diameter / 16)), (0.5, 1.0))
    _add(od, cv2.GaussianBlur(gran, (0, 0), 0.5) * alpha + 0.35 * core,
         stain.od["platelet_granule"])
    return alpha


def thrombocyte(rng: np.random.Generator, diameter: float, stain: Stain) -> Cell:
    """A thrombocyte about ``diameter`` px across: small irregular purple granular fragment."""
    shape, c = _square(diameter, 1.4)
    od = np.zeros((*shape, 3), np.float32)
    alpha = _platelet_into(rng, shape, c, diameter, stain, od)
    return Cell(od, alpha, np.zeros_like(alpha))


def platelet_clump(rng: np.random.Generator, length: float, stain: Stain,
                   platelet_d: tuple[float, float]) -> Cell:
    """A clump of 3-10 platelets (each ``platelet_d`` px across) about ``length`` px long.

    The platelets follow a forward-biased random walk with occasional side branches, each one
    touching or overlapping an earlier one, so the clump is elongated and irregular and its parts
    are never more than a couple of pixels apart.
    """
    n = int(rng.integers(3, 11))
    d_mean = float(np.clip(length / (0.62 * n + 0.6), *platelet_d))
    ds = np.clip(rng.normal(d_mean, d_mean * 0.15, n), platelet_d[0] * 0.8, platelet_d[1])
    heading = rng.uniform(0, 2 * np.pi)
    pts = [np.zeros(2)]
    for i in range(1, n):
        base = pts[int(rng.integers(0, i))] if rng.random() < 0.45 else pts[-1]
        heading += rng.normal(0, 0.9)
        step = (ds[i] + ds[i - 1]) / 2 * rng.uniform(0.45, 0.8)
        pts.append(base + step * np.array([np.cos(heading), np.sin(heading)]))
    p = np.array(pts)
    p -= (p.min(0) + p.max(0)) / 2
    extent = float(np.abs(p).max() + ds.max())
    side = int(np.ceil(extent * 2)) + 10
    shape = (side, side)
    od = np.zeros((*shape, 3), np.float32)
    alpha = np.zeros(shape, np.float32)
    for (x, y), d in zip(p, ds):
        np.maximum(alpha, _platelet_into(rng, shape, (side / 2 + x, side / 2 + y), d, stain, od),
                   out=alpha)
    return Cell(od, alpha, np.zeros_like(alpha))


# --------------------------------------------------------------------------------------------
# white blood cells


def _chromatin(rng: np.random.Generator, shape: tuple[int, int], r: float, coarse: float,
               fine: float, lacy: bool = False) -> np.ndarray:
    """Density factor (h, w) around 1: clumped chromatin (coarse blobs + fine grain)."""
    h, w = shape
    tex = 1 + coarse * smooth_noise(rng, h, w, max(3.0, r / 4))
    tex += fine * smooth_noise(rng, h, w, max(1.6, r / 22))
    if lacy:  # pale parachromatin holes in a network of strands
        net = smooth_noise(rng, h, w, max(2.0, r / 10))
        tex -= 0.35 * smoothstep(0.1, 0.6, net)
    return np.clip(tex, 0.35, 1.8).astype(np.float32)


def _nucleus_neutrophil(rng: np.random.Generator, shape: tuple[int, int],
                        c: tuple[float, float], r: float) -> np.ndarray:
    """3-5 plump lobes along a curved (C or S) path, joined by thin chromatin strands."""
    n = int(rng.choice([3, 3, 4, 4, 4, 5]))
    ra = r * rng.uniform(0.22, 0.28, n)          # lobe half-length, across the path
    rb = ra * rng.uniform(0.62, 0.82, n)          # lobe half-width, along the path
    gaps = r * rng.uniform(0.1, 0.22, n - 1)
    path_r = r * rng.uniform(0.38, 0.48)
    steps = (rb[:-1] + rb[1:] + gaps) / path_r    # angle between neighbouring lobes
    ang = rng.uniform(0, 2 * np.pi) + np.concatenate([[0.0], np.cumsum(steps)])
    off = rng.normal(0, r * 0.05, 2)
    ecc, phi = rng.uniform(0, 0.3), rng.uniform(0, np.pi)  # elliptical path: C to open U
    pr = path_r * (1 + ecc * np.cos(2 * (ang - phi))) * rng.uniform(0.95, 1.08, n)
    pts = np.stack([c[0] + off[0] + pr * np.cos(ang), c[1] + off[1] + pr * np.sin(ang)], 1)
    pts -= (pts.max(0) + pts.min(0)) / 2 - np.asarray(c) - off
    lobes = [outline(rng, (x, y), (ra[i], rb[i]), ang[i] + rng.normal(0, 0.25), 0.1)
             for i, (x, y) in enumerate(pts)]
    cov = fill(shape, lobes)
    strands = np.zeros(shape, np.uint8)
    th = max(1, round(r * rng.uniform(0.03, 0.05)))
    for p, q in itertools.pairwise(pts):
        mid = (p + q) / 2 + rng.normal(0, r * 0.04, 2)
        line = np.round(np.array([p, mid, q]) * 16).astype(np.int32)
        cv2.polylines(strands, [line], False, 255, th, cv2.LINE_AA, shift=4)
    cov = np.maximum(cov, strands.astype(np.float32) / 255)
    return soften(cov, 0.7)


def _nucleus_eosinophil(rng: np.random.Generator, shape: tuple[int, int],
                        c: tuple[float, float], r: float) -> np.ndarray:
    """Two plump lobes ("spectacles") joined by a short band, sometimes a small third lobe."""
    a = rng.uniform(0, 2 * np.pi)
    sep = r * rng.uniform(0.27, 0.36)
    off = rng.normal(0, r * 0.08, 2)
    bend = rng.normal(0, 0.3)
    centres = [(c[0] + off[0] + s * sep * np.cos(a + s * bend),
                c[1] + off[1] + s * sep * np.sin(a + s * bend)) for s in (-1, 1)]
    polys = [outline(rng, p, (r * rng.uniform(0.29, 0.36), r * rng.uniform(0.22, 0.28)),
                     a + np.pi / 2 + rng.normal(0, 0.3), 0.1) for p in centres]
    cov = fill(shape, polys)
    band = np.zeros(shape, np.uint8)
    th = max(1, round(r * rng.uniform(0.06, 0.14)))
    cv2.line(band, tuple(int(v * 16) for v in centres[0]), tuple(int(v * 16) for v in centres[1]),
             255, th, cv2.LINE_AA, shift=4)
    cov = np.maximum(cov, band.astype(np.float32) / 255)
    return soften(cov, 0.8)


def _nucleus_basophil(rng: np.random.Generator, shape: tuple[int, int],
                      c: tuple[float, float], r: float) -> np.ndarray:
    """An irregular lobulated nucleus (largely hidden under granules)."""
    polys = []
    for _ in range(int(rng.integers(2, 4))):
        p = (c[0] + rng.normal(0, r * 0.15), c[1] + rng.normal(0, r * 0.15))
        polys.append(outline(rng, p, (r * rng.uniform(0.3, 0.42), r * rng.uniform(0.25, 0.35)),
                             rng.uniform(0, np.pi), 0.2))
    return soften(np.maximum.reduce([fill(shape, [q]) for q in polys]), 1.0)


def _nucleus_lymphocyte(rng: np.random.Generator, shape: tuple[int, int],
                        c: tuple[float, float], r: float) -> np.ndarray:
    """Large round nucleus filling most of the cell, slightly eccentric, maybe a small notch."""
    k = rng.uniform(0.74, 0.86)
    off = rng.uniform(0.03, 0.13) * r
    a = rng.uniform(0, 2 * np.pi)
    p = (c[0] + off * np.cos(a), c[1] + off * np.sin(a))
    cov = blob(rng, shape, p, (r * k, r * k * rng.uniform(0.88, 1.0)), rng.uniform(0, np.pi),
               0.05)
    if rng.random() < 0.3:
        b = a + np.pi + rng.normal(0, 0.5)
        notch = blob(rng, shape, (p[0] + r * k * np.cos(b), p[1] + r * k * np.sin(b)),
                     (r * 0.1, r * 0.3), b, 0.1)  # a shallow indentation
        cov = np.clip(cov - notch, 0, 1)
    return soften(cov, 0.6)


def _nucleus_monocyte(rng: np.random.Generator, shape: tuple[int, int],
                      c: tuple[float, float], r: float) -> np.ndarray:
    """A kidney- or horseshoe-shaped folded nucleus: a thick curved band, round-ended."""
    span = rng.uniform(0.55, 1.25) * np.pi
    arc_r = r * rng.uniform(0.3, 0.38)
    thick = r * rng.uniform(0.27, 0.35)
    a0 = rng.uniform(0, 2 * np.pi)
    off = rng.normal(0, r * 0.07, 2)
    acx = c[0] + off[0] - arc_r * 0.35 * np.cos(a0 + span / 2)
    acy = c[1] + off[1] - arc_r * 0.35 * np.sin(a0 + span / 2)
    t = np.linspace(0, 1, 24)
    angles = a0 + span * t
    widths = thick * (0.85 + 0.3 * np.sin(np.pi * t)) * (1 + rng.normal(0, 0.04, t.size))
    outer = np.stack([acx + (arc_r + widths) * np.cos(angles), acy + (arc_r + widths) *
                      np.sin(angles)], 1)
    inner = np.stack([acx + np.maximum(arc_r - widths, 0) * np.cos(angles),
                      acy + np.maximum(arc_r - widths, 0) * np.sin(angles)], 1)
    cov = fill(shape, [np.concatenate([outer, inner[::-1]])])
    for end, ang, wd in ((0, angles[0], widths[0]), (-1, angles[-1], widths[-1])):
        cx, cy = acx + arc_r * np.cos(ang), acy + arc_r * np.sin(ang)
        cov = np.maximum(cov, blob(rng, shape, (cx, cy), (wd, wd * 0.9), ang, 0.1))
    return soften(cov, 1.4)


def wbc(rng: np.random.Generator, kind: str, diameter: float, stain: Stain) -> Cell:
    """A white blood cell of type ``kind`` (one of WBC_TYPES) about ``diameter`` px across.

    neutrophil: 3-5 lobes joined by thin strands, pale pink-lilac finely granular cytoplasm;
    eosinophil: bilobed nucleus, cytoplasm packed with orange-red granules;
    basophil: dark purple-black granules covering and obscuring the nucleus;
    lymphocyte: large round dense nucleus, thin rim of sky-blue cytoplasm;
    monocyte: kidney/horseshoe lacy nucleus, grey-blue cytoplasm, sometimes vacuoles.
    """
    if kind not in WBC_TYPES:
        raise ValueError(f"unknown WBC type {kind!r}")
    shape, c = _square(diameter, 1.18)
    r = diameter / 2
    h, w = shape
    wob = {"Monocytes": rng.uniform(0.04, 0.09), "Lymphocytes": 0.03}.get(kind, 0.035)
    alpha = blob(rng, shape, c, (r, r * rng.uniform(0.9, 1.0)), rng.uniform(0, np.pi), wob)
    u = depth(alpha, r)
    od = np.zeros((*shape, 3), np.float32)
    cyto_name = {"Eosinophil": "eos_cyto", "Basophil": "baso_cyto", "Neutrophil": "neut_cyto",
                 "Lymphocytes": "lymph_cyto", "Monocytes": "mono_cyto"}[kind]
    cyto = alpha * (1 + 0.08 * smooth_noise(rng, h, w, max(3.0, r / 6)))
    if kind == "Lymphocytes":  # cytoplasm darker blue toward the periphery
        cyto *= 1 + 0.5 * (1 - smoothstep(0.0, 0.2, u))
    cyto *= smoothstep(0.0, 0.04, u) * 0.6 + 0.4
    _add(od, cyto * rng.uniform(0.85, 1.2), stain.od[cyto_name])

    nucleus_fn = {"Neutrophil": _nucleus_neutrophil, "Eosinophil": _nucleus_eosinophil,
                  "Basophil": _nucleus_basophil, "Lymphocytes": _nucleus_lymphocyte,
                  "Monocytes": _nucleus_monocyte}[kind]
    nuc = nucleus_fn(rng, shape, c, r) * alpha
    nuc_name = {"Lymphocytes": "nucleus_lymph", "Monocytes": "nucleus_mono"}.get(kind, "nucleus")
    if kind == "Monocytes":
        tex = _chromatin(rng, shape, r, 0.12, 0.28, lacy=True)
    elif kind == "Lymphocytes":
        tex = _chromatin(rng, shape, r, 0.18, 0.16)
    else:
        tex = _chromatin(rng, shape, r, 0.2, 0.14)
    rim = 1 + 0.18 * (1 - smoothstep(0.0, 0.12, depth(nuc, r)))  # darker nuclear membrane
    strength = {"Lymphocytes": 1.15, "Monocytes": 0.9}.get(kind, 1.0) * rng.uniform(0.88, 1.12)
    soft_nuc = cv2.GaussianBlur(nuc, (0, 0), 0.7)  # dark edges need a wider ramp in OD
    if kind == "Basophil":
        strength *= 0.75
    _add(od, soft_nuc * tex * rim * strength, stain.od[nuc_name])

    gran_where = alpha * (u > 0.03)
    if kind == "Eosinophil":  # densely packed orange-red granules, fewer over the nucleus
        gr = r * rng.uniform(0.04, 0.052)
        n = int(1.5 * (r / gr) ** 2)
        gran = dots(shape, rng, gran_where, n, (gr * 0.8, gr * 1.2), (0.6, 1.0))
        gran = cv2.GaussianBlur(gran, (0, 0), 0.5) * (1 - 0.7 * nuc)
        _add(od, gran * rng.uniform(0.8, 1.05), stain.od["eos_granule"])
    elif kind == "Basophil":  # coarse purple-black granules over cytoplasm and nucleus
        n = int(rng.uniform(0.5, 0.9) * (r / 3.0) ** 2)
        gran = dots(shape, rng, gran_where, n, (r * 0.03, r * 0.065), (0.45, 1.0))
        over = dots(shape, rng, nuc * gran_where, int(n * rng.uniform(0.5, 0.9)),
                    (r * 0.035, r * 0.07), (0.6, 1.0))  # heaped over the nucleus
        gran = cv2.GaussianBlur(np.maximum(gran, over), (0, 0), 0.6)
        _add(od, gran * rng.uniform(0.9, 1.3), stain.od["baso_granule"])
        haze = cv2.GaussianBlur(gran, (0, 0), r / 8) * 0.5 * (0.5 + soft_nuc)
        _add(od, haze * alpha, stain.od["baso_granule"])
    elif kind == "Neutrophil":  # fine dust-like lilac granules
        n = int((r / 1.6) ** 2)
        fine = dots(shape, rng, gran_where, n, (0.5, 0.9), (0.3, 0.7))
        _add(od, cv2.GaussianBlur(fine, (0, 0), 0.5), stain.od["neut_granule"])
    elif kind == "Lymphocytes" and rng.random() < 0.25:  # a few azurophilic granules
        az = dots(shape, rng, alpha * (1 - nuc) * (u > 0.05), int(rng.integers(2, 7)),
                  (0.6, 1.2), (0.5, 0.9))
        _add(od, az, stain.od["azurophil"])
    elif kind == "Monocytes":
        fine = dots(shape, rng, gran_where, int((r / 2.5) ** 2), (0.5, 0.8), (0.2, 0.45))
        _add(od, cv2.GaussianBlur(fine, (0, 0), 0.6), stain.od["azurophil"])
        if rng.random() < 0.65:  # vacuoles: small clear holes in the cytoplasm
            vac = dots(shape, rng, alpha * (1 - nuc) * (u > 0.1), int(rng.integers(2, 9)),
                       (r * 0.04, r * 0.09), (0.6, 0.9))
            vac = cv2.GaussianBlur(vac, (0, 0), 0.7)
            od *= (1 - 0.75 * vac)[..., None]
    return Cell(od, alpha, nuc)


# --------------------------------------------------------------------------------------------
# composing and developing


def plasma_od(rng: np.random.Generator, shape: tuple[int, int], stain: Stain,
              debris: float = 0.0) -> np.ndarray:
    """Background OD (h, w, 3): faint uneven plasma stain, optional tiny debris per 100k px."""
    h, w = shape
    dens = 1 + 0.5 * smooth_noise(rng, h, w, max(h, w) / 5) + 0.15 * smooth_noise(rng, h, w, 9)
    od = np.clip(dens, 0.2, 2)[..., None] * stain.od["plasma"]
    n = int(rng.poisson(debris * h * w / 1e5)) if debris > 0 else 0
    if n:
        specks = dots(shape, rng, np.ones(shape, np.float32), n, (0.6, 1.6), (0.3, 0.9))
        od += cv2.GaussianBlur(specks, (0, 0), 0.6)[..., None] * stain.od["platelet_granule"]
    return od.astype(np.float32)


def paste_od(od: np.ndarray, cell: Cell, x: int, y: int,
             alpha: np.ndarray | None = None) -> None:
    """Add ``cell``'s OD to the (H, W, 3) canvas ``od`` with its top-left at (x, y), clipped;
    if given, ``alpha`` (H, W) keeps the maximum coverage."""
    h, w = cell.alpha.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, od.shape[1]), min(y + h, od.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    od[y0:y1, x0:x1] += cell.od[y0 - y : y1 - y, x0 - x : x1 - x]
    if alpha is not None:
        np.maximum(alpha[y0:y1, x0:x1], cell.alpha[y0 - y : y1 - y, x0 - x : x1 - x],
                   out=alpha[y0:y1, x0:x1])


def sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean noise of standard deviation ``sigma`` (triangular: the sum of two uniform
    bytes, much faster to draw than Gaussian and alike once the image is blurred)."""
    n = int(np.prod(shape))
    a = np.frombuffer(rng.bytes(n), np.uint8).astype(np.float32)
    a += np.frombuffer(rng.bytes(n), np.uint8)
    a -= 255.0
    a *= np.float32(sigma / 104.4)
    return a.reshape(shape)


def develop(od: np.ndarray, light: np.ndarray, rng: np.random.Generator, blur: float,
            noise: float, vignette: float = 0.0) -> np.ndarray:
    """Image uint8 BGR = light * exp(-od), with vignetting, focus blur (Gaussian sigma px) and
    sensor noise (Gaussian, sigma in grey levels); ``light`` is BGR (3,)."""
    h, w = od.shape[:2]
    img = np.exp(-od) * light.astype(np.float32)
    if vignette > 0:
        yy = (np.arange(h, dtype=np.float32) - h / 2) / (max(h, w) / 2)
        xx = (np.arange(w, dtype=np.float32) - w / 2) / (max(h, w) / 2)
        cx, cy = rng.uniform(-0.2, 0.2, 2)
        fall = 1 - vignette * ((yy[:, None] - cy) ** 2 + (xx[None, :] - cx) ** 2)
        img *= fall[..., None]
    if blur > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise > 0:
        img += sensor_noise(rng, img.shape, noise)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class Smear:
    """A field being composed: OD canvas of (height, width), plasma background, cells drawn
    with ``draw(cell, x, y)`` (top-left, px) and the image made with ``develop``."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, stain: Stain,
                 debris: float = 0.0) -> None:
        self.stain = stain
        self.od = plasma_od(rng, (height, width), stain, debris)
        self.alpha = np.zeros((height, width), np.float32)

    def draw(self, cell: Cell, x: int, y: int) -> None:
        paste_od(self.od, cell, x, y, self.alpha)

    def develop(self, rng: np.random.Generator, blur: float, noise: float,
                vignette: float = 0.0) -> np.ndarray:
        return develop(self.od, self.stain.light, rng, blur, noise, vignette)


def cell_patch(rng: np.random.Generator, cell: Cell, stain: Stain, pad: int = 4,
               blur: float | None = None,
               noise: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cell alone on plasma with ``pad`` px around it: (uint8 BGR image, bool mask, bool
    nucleus mask), all of shape (h + 2 pad, w + 2 pad). ``blur`` defaults to a random
    focus in 0-1.2 px."""
    h, w = cell.alpha.shape
    smear = Smear(rng, w + 2 * pad, h + 2 * pad, stain)
    smear.draw(cell, pad, pad)
    sigma = rng.uniform(0, 1.2) if blur is None else blur
    img = smear.develop(rng, sigma, noise)
    mask = np.pad(cell.mask, pad)
    nuc = np.pad(cell.nucleus_mask, pad)
    return img, mask, nuc
