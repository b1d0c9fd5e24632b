"""The header of a ``.npy`` file: numpy's own layout parsed directly, any other by numpy.

numpy writes a version 1.0 header as the dict text
``{'descr': '<f4', 'fortran_order': False, 'shape': (26000, 128), }`` padded with spaces to
an aligned length. numpy's reader parses it with ``ast.literal_eval`` (~20 µs a header, and a
model load reads two). A header in exactly that layout, with a plain dtype string, is parsed
here by a regular expression; every other header (another writer's spacing, versions 2.0 and
3.0, structured or datetime dtypes) goes to numpy's reader unchanged. Both give the same
``(shape, fortran_order, dtype)``; the caller still checks the dtype and the sizes.
"""

from __future__ import annotations

import functools
import re
from typing import Any, BinaryIO

_MAGIC_V1 = b"\x93NUMPY\x01\x00"
_PREFIX_BYTES = len(_MAGIC_V1) + 2  # magic, version, then the header length (uint16, little-endian)
_NUMPY_LAYOUT = re.compile(
    rb"\{'descr': '([<>|=][a-z]\d{1,2})', 'fortran_order': (True|False), "
    rb"'shape': \(((?:\d+, )*(?:\d+,?)?)\), \} *\n"
)


def read_array_header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, Any]:
    """``(shape, fortran_order, dtype)`` from the header at ``handle``'s position; leaves it at the data.

    Raises:
        ValueError: a format version numpy does not define; like EOFError, SyntaxError and the
            rest of what numpy's reader raises for a malformed header (the caller names the file).
    """
    start = handle.tell()
    prefix = handle.read(_PREFIX_BYTES)
    if len(prefix) == _PREFIX_BYTES and prefix.startswith(_MAGIC_V1):
        header = handle.read(int.from_bytes(prefix[-2:], "little"))
        match = _NUMPY_LAYOUT.fullmatch(header)
        if match is not None:
            descr, fortran, shape = match.groups()
            return tuple(int(n) for n in shape.split(b",") if n.strip()), fortran == b"True", _dtype(descr.decode())
    handle.seek(start)
    return _numpy_read(handle)


@functools.lru_cache(maxsize=64)
def _dtype(descr: str) -> Any:
    import numpy as np

    return np.dtype(descr)


def _numpy_read(handle: BinaryIO) -> tuple[tuple[int, ...], bool, Any]:
    from numpy.lib import format as npformat

    version = npformat.read_magic(handle)
    if version == (1, 0):
        return npformat.read_array_header_1_0(handle)
    if version in ((2, 0), (3, 0)):
        return npformat.read_array_header_2_0(handle)
    raise ValueError(f"unsupported .npy format version {version}")
