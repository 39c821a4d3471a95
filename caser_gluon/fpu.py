"""Flush subnormal floats to zero on x86-64: a speed setting for training.

Not a section of the chapter. Adam's moment estimates of rows that stop
receiving gradients (items no batch samples for a while, users with few
windows) decay geometrically until they are *subnormal* (below
``1.18e-38`` in float32). x86 CPUs compute with such numbers through a
slow microcode path, often tens of times slower per operation, so a long
run slows down by itself. Setting two bits of the SSE control register
MXCSR avoids it: FTZ (flush to zero, bit 15, ``0x8000``) turns subnormal
results into zero and DAZ (denormals are zero, bit 6, ``0x0040``) reads
subnormal inputs as zero. Values this small change no score or update
that matters (the smallest normal float32 is ``1.2e-38``).

The register is per thread, and a new thread starts with a copy of its
creator's. MXNet's engine and OpenMP threads (and OpenBLAS's, started by
``import numpy``) are created when those libraries load, so an entry point
must call :func:`enable_flush_to_zero` **before importing numpy or
mxnet**::

    from caser_gluon.fpu import enable_flush_to_zero
    enable_flush_to_zero()
    import mxnet  # noqa: E402  (its threads inherit FTZ and DAZ)

This module imports only the standard library, and
``caser_gluon/__init__.py`` imports nothing eagerly, so the call can come
first. Threads that already exist keep their register.

The register is set through glibc's ``fegetenv``/``fesetenv``: on x86-64
``fenv_t`` is 32 bytes (the x87 environment, then the MXCSR at byte 28,
``<bits/fenv.h>``) and ``fesetenv`` loads both. Elsewhere (other CPUs,
other C libraries, Windows, macOS) the call does nothing and returns
``False``.
"""
import ctypes
import ctypes.util
import platform
import struct
import sys
import warnings

__all__ = ['FTZ_DAZ', 'enable_flush_to_zero', 'flush_to_zero_enabled',
           'read_mxcsr']

#: MXCSR bits: flush to zero (15) and denormals are zero (6)
FTZ_DAZ = 0x8040

_FENV_T_SIZE = 32        # sizeof(fenv_t), x86-64 glibc
_MXCSR_OFFSET = 28       # offsetof(fenv_t, __mxcsr)


def _libm():
    """glibc's libm on x86-64 Linux, else ``None``."""
    if (sys.platform != 'linux'
            or platform.machine().lower() not in ('x86_64', 'amd64')
            or platform.libc_ver()[0] != 'glibc'):
        return None
    name = ctypes.util.find_library('m') or 'libm.so.6'
    try:
        libm = ctypes.CDLL(name)
    except OSError:
        return None
    for func in (libm.fegetenv, libm.fesetenv):
        func.argtypes, func.restype = [ctypes.c_void_p], ctypes.c_int
    return libm


def _environment():
    """``(libm, fenv_t buffer)`` of this thread, or ``(libm, None)``."""
    libm = _libm()
    if libm is None:
        return None, None
    env = ctypes.create_string_buffer(_FENV_T_SIZE)
    return libm, (env if libm.fegetenv(env) == 0 else None)


def read_mxcsr():
    """This thread's MXCSR as an int, or ``None`` where it cannot be read.
    """
    _, env = _environment()
    return None if env is None else struct.unpack_from(
        '<I', env.raw, _MXCSR_OFFSET)[0]


def enable_flush_to_zero():
    """Set FTZ and DAZ in this thread's MXCSR (see the module docstring).

    Call it before importing numpy or mxnet, so that the threads they
    start inherit the setting.

    Also silences numpy's warning that the smallest subnormal is now
    zero.

    Returns
    -------
    bool
        ``True`` if both bits are now set, ``False`` on platforms where
        this does nothing (not x86-64 Linux with glibc) or if the C
        library refused.
    """
    libm, env = _environment()
    if env is None:
        return False
    mxcsr = struct.unpack_from('<I', env.raw, _MXCSR_OFFSET)[0]
    # only the control bits change; the status flags (bits 0-5) are kept
    struct.pack_into('<I', env, _MXCSR_OFFSET, mxcsr | FTZ_DAZ)
    if libm.fesetenv(env) != 0:
        return False
    # numpy.finfo then finds the smallest subnormal to be 0 and says so
    warnings.filterwarnings('ignore', category=UserWarning,
                            message='The value of the smallest subnormal')
    return flush_to_zero_enabled()


def flush_to_zero_enabled():
    """Whether FTZ and DAZ are both set in this thread's MXCSR."""
    mxcsr = read_mxcsr()
    return mxcsr is not None and mxcsr & FTZ_DAZ == FTZ_DAZ
