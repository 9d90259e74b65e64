"""Float EXR in and out (OpenEXR package), one channel named Z for depth."""

from __future__ import annotations

import numpy as np


def write_exr_depth(path: str, depth_m: np.ndarray) -> None:
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Z": np.ascontiguousarray(depth_m, dtype=np.float32)}) as f:
        f.write(path)


def read_exr_depth(path: str) -> np.ndarray:
    import OpenEXR

    with OpenEXR.File(path) as f:
        ch = f.channels()
        key = "Z" if "Z" in ch else next(iter(ch))
        return np.asarray(ch[key].pixels, dtype=np.float32)
