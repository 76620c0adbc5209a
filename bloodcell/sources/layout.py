"""Checks of a database's on-disk layout, with error messages that say how to fix it."""

from __future__ import annotations

from pathlib import Path

from bloodcell.common.errors import UserError

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def find_nested(root: Path, relpath: str, max_depth: int = 3) -> Path | None:
    """The folder F within ``max_depth`` levels below ``root`` such that F/relpath exists."""
    frontier = [root]
    for _ in range(max_depth):
        nxt = []
        for folder in frontier:
            try:
                subs = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for sub in subs:
                if (sub / relpath).exists():
                    return sub
                nxt.append(sub)
        frontier = nxt
    return None


def require_layout(root: Path, relpath: str, db: str) -> Path:
    """Return root/relpath, or raise UserError naming what is wrong and where it was found."""
    if not root.is_dir():
        raise UserError(f"{root}: {db} database folder not found; put the database there "
                        f"(see raw/README.md) or set sources.root in params.yaml")
    target = root / relpath
    if target.is_dir():
        return target
    deeper = find_nested(root, relpath)
    if deeper is not None:
        raise UserError(f"{target}: not found, but {deeper / relpath} exists: the {db} "
                        f"database is unpacked one level too deep; move the contents of "
                        f"{deeper} into {root}")
    if root.name == Path(relpath).parts[0] or (root / Path(relpath).name).exists():
        raise UserError(f"{target}: not found; {root} looks like the inside of the {db} "
                        f"database: point to its parent folder instead (see raw/README.md)")
    raise UserError(f"{target}: not found; the {db} database must be laid out as in "
                    f"raw/README.md")


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files and other files directly in ``folder``, both sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    return images, others


def require_images(folder: Path, db: str) -> list[Path]:
    """The images in a class folder; UserError if it holds none."""
    images, _ = list_images(folder)
    if not images:
        raise UserError(f"{folder}: empty class folder (no {', '.join(IMAGE_SUFFIXES)} files); "
                        f"re-download or re-unpack the {db} database")
    return images
