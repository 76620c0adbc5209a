"""bloodcell: a reproducible pipeline for blood-cell and malaria detection in blood smears.

``from bloodcell import Detector`` gives the Python API (bloodcell.detect.api), imported on first
use so that ``import bloodcell`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["Detector", "__version__"]


def __getattr__(name: str):
    if name == "Detector":
        from bloodcell.detect.api import Detector

        return Detector
    raise AttributeError(f"module 'bloodcell' has no attribute {name!r}")
