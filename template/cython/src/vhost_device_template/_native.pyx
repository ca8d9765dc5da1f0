# cython: language_level=3, boundscheck=False, wraparound=False
"""The device's C: `python3 xtask new --cython` starts it with one function; list more
modules in pyproject.toml's [tool.hatch.build.targets.wheel.hooks.custom] extensions."""


def byte_sum(const unsigned char[::1] data) -> int:
    """The sum of `data`'s bytes, without the GIL: a typed memoryview over the buffer
    (guest memory, say) and a C loop, no Python object per byte."""
    cdef Py_ssize_t i
    cdef unsigned long long total = 0
    with nogil:
        for i in range(data.shape[0]):
            total += data[i]
    return total
