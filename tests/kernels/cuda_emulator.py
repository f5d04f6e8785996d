"""Run the CUDA kernels of :mod:`npalexnet.kernels.cuda_kernels` on the CPU, from their own source.

The kernel source is plain C++ apart from ``__global__`` and the launch
built-ins (``threadIdx``, ``blockIdx``, ``blockDim``, ``gridDim``). This
module defines those, compiles the *same source text* with the host C++
compiler, and calls each kernel once per (block, thread) of a launch, so
the index arithmetic (C integer semantics included) is tested without a
GPU. It plays the part of :class:`~npalexnet.kernels.cuda_kernels.CupyLauncher`
and, on top of what a GPU would do, checks every launch:

* each argument against the kernel's C signature (a Python int where an
  ``int`` is expected, a float64 array for a ``float*``, a missing argument:
  all errors here, silent garbage under CuPy);
* every array is passed as a *poisoned memory image*: inputs are copied into
  a buffer filled with NaN (or an impossible index) everywhere except the
  view's own elements, with guard zones on both sides, so a read at a wrong
  offset or stride yields NaN in the result; outputs are poisoned too, so
  an element no thread writes stays NaN, and a write outside the array is
  caught in the guard zones.

What it cannot check: NVRTC compilation, CuPy's argument marshalling, and
races between threads (each kernel writes only its own output element,
which is what makes the results independent of thread order; the tests run
several launch shapes and orders to check that).
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy
from numpy.lib.stride_tricks import as_strided

from npalexnet.kernels import cuda_kernels as ck

PRELUDE = r"""
#include <math.h>
struct npa_uint3 { unsigned int x, y, z; };
static npa_uint3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
extern "C" void npa_emu_config(unsigned int block, unsigned int grid, unsigned int b, unsigned int t) {
  blockDim.x = block; gridDim.x = grid; blockIdx.x = b; threadIdx.x = t;
}
#define __global__
"""

GUARD = 64          # poisoned elements on each side of every array


def compiler():
    """The host C++ compiler, or None."""
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


_build_dir = None
_libs = {}


def _compile(code: str) -> ctypes.CDLL:
    global _build_dir
    key = hashlib.sha256(code.encode()).hexdigest()[:16]
    if key in _libs:
        return _libs[key]
    if _build_dir is None:
        _build_dir = tempfile.mkdtemp(prefix="npa_cuda_emu_")
        atexit.register(shutil.rmtree, _build_dir, True)
    src = os.path.join(_build_dir, f"{key}.cpp")
    lib = os.path.join(_build_dir, f"{key}.so")
    with open(src, "w") as f:
        f.write(code)
    # -ffp-contract=off: no FMA contraction, so float results follow the source's rounding.
    cmd = [compiler(), "-O1", "-shared", "-fPIC", "-std=c++11", "-Wall", "-Werror", "-Wno-unused-variable",
           "-ffp-contract=off", src, "-o", lib]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling the kernel source failed:\n{done.stderr}")
    _libs[key] = ctypes.CDLL(lib)
    return _libs[key]


# ----------------------------------------------------------------------------
# Signatures
# ----------------------------------------------------------------------------

_SIG = re.compile(r'extern "C" __global__ void (\w+)\((.*?)\)\s*\{', re.DOTALL)


def kernel_signatures(source: str = ck.SOURCE) -> dict:
    """``{name: [(ctype, const, param_name), ...]}`` parsed from the kernel source."""
    sigs = {}
    for name, params in _SIG.findall(source):
        out = []
        for p in params.split(","):
            p = " ".join(p.replace("__restrict__", "").split())
            const = p.startswith("const ")
            p = p.removeprefix("const ")
            ctype, pname = p.rsplit(" ", 1)
            if pname.startswith("*"):
                ctype, pname = ctype + "*", pname[1:]
            out.append((ctype.replace(" *", "*"), const, pname))
        sigs[name] = out
    return sigs


SIGNATURES = kernel_signatures()

_SCALARS = {"int": (numpy.int32, ctypes.c_int32), "long long": (numpy.int64, ctypes.c_int64)}
_CTYPES_OF = {"float32": ctypes.c_float, "float64": ctypes.c_double}


def _poison(dtype):
    dtype = numpy.dtype(dtype)
    if dtype.kind == "f":
        return numpy.nan
    if dtype.kind == "b":
        return True
    return numpy.iinfo(dtype).max       # no valid window index (uint8: 255 > 254 = max k)


class _Image:
    """A poisoned copy of an array's memory; ``ptr`` stands where the array's first element was."""

    def __init__(self, a, output: bool):
        self.a, self.output = a, output
        item = a.itemsize
        if output:
            if not a.flags.c_contiguous:
                raise AssertionError("kernel outputs are written at flat index i: they must be C-contiguous")
            lo, hi = 0, a.size * item
        else:
            spans = [s * (d - 1) for s, d in zip(a.strides, a.shape)] if a.size else []
            lo = sum(v for v in spans if v < 0)
            hi = sum(v for v in spans if v > 0) + item
        assert lo % item == 0 and hi % item == 0
        self.start = GUARD - lo // item          # element index of a's first element in buf
        self.buf = numpy.full(GUARD * 2 + (hi - lo) // item, _poison(a.dtype), dtype=a.dtype)
        if output:
            self.view = self.buf[self.start:self.start + a.size]
        else:
            self.view = as_strided(self.buf[self.start:], shape=a.shape, strides=a.strides)
            self.view[...] = a
        if output:
            # Guard zones hold a value no kernel produces by accident (not the NaN poison,
            # which a stray write of a poisoned read would copy unnoticed).
            sentinel = -3.0e38 if a.dtype.kind == "f" else (171 if a.itemsize == 1 else -123456789)
            self.buf[:GUARD] = self.buf[len(self.buf) - GUARD:] = sentinel
        self.ptr = ctypes.c_void_p(self.buf.ctypes.data + self.start * item)
        self.guards = (self.buf[:GUARD].copy(), self.buf[len(self.buf) - GUARD:].copy())

    def finish(self, name, position):
        before, after = self.buf[:GUARD], self.buf[len(self.buf) - GUARD:]
        same = numpy.array_equal(before, self.guards[0], equal_nan=self.a.dtype.kind == "f") and \
            numpy.array_equal(after, self.guards[1], equal_nan=self.a.dtype.kind == "f")
        if not same:
            raise AssertionError(f"{name}: argument {position} was written outside its array")
        if self.output:
            self.a[...] = self.view.reshape(self.a.shape)


def run_kernel(source, name, scalar, index, grid, block, args, reverse=False):
    """Run kernel ``name`` of ``source`` (a :func:`~npalexnet.kernels.cuda_kernels.source_for`
    text) on the CPU for every (block, thread) of a ``grid`` x ``block`` launch, checking
    the arguments against the kernel's signature and passing arrays as poisoned images."""
    sig = SIGNATURES[name]
    if len(args) != len(sig):
        raise AssertionError(f"{name}: {len(args)} arguments for {len(sig)} parameters")
    c_args, images = [], []
    for pos, ((ctype, const, pname), a) in enumerate(zip(sig, args)):
        where = f"{name} argument {pos} ({ctype} {pname})"
        if ctype.endswith("*"):
            want = {"scalar_t*": scalar, "index_t*": index}[ctype]
            if not isinstance(a, numpy.ndarray) or a.dtype.name != want:
                raise AssertionError(f"{where}: expected a {want} array, got {type(a).__name__} "
                                     f"{getattr(a, 'dtype', '')}")
            img = _Image(a, output=not const)
            images.append((pos, img))
            c_args.append(img.ptr)
        elif ctype == "scalar_t":
            if type(a) is not numpy.dtype(scalar).type:
                raise AssertionError(f"{where}: expected numpy.{scalar}, got {type(a).__name__}")
            c_args.append(_CTYPES_OF[scalar](a))
        else:
            np_type, c_type = _SCALARS[ctype]
            if type(a) is not np_type:
                raise AssertionError(f"{where}: expected numpy.{np_type.__name__}, got {type(a).__name__}")
            c_args.append(c_type(int(a)))
    if grid:
        lib = _compile(PRELUDE + source)
        fn = getattr(lib, name)
        fn.restype = None
        threads = [(b, t) for b in range(grid) for t in range(block)]
        for b, t in (reversed(threads) if reverse else threads):
            lib.npa_emu_config(block, grid, b, t)
            fn(*c_args)
    for pos, img in images:
        img.finish(name, pos)


_C_SCALAR = {"float": "float32", "double": "float64"}
_C_INDEX = {"unsigned char": "uint8", "int": "int32"}


class FakeCupy:
    """Just enough of the ``cupy`` module for ``CupyLauncher``, running on the emulator:
    ``RawModule(code=...).get_function(name)((grid,), (block,), args)`` and ``ElementwiseKernel``.
    Lets the tests run the real launcher (its grid, its argument tuples) on NumPy arrays."""

    class RawModule:
        def __init__(self, code, options=()):
            self.code = code
            self.scalar = _C_SCALAR[re.search(r"typedef (\w+) scalar_t;", code).group(1)]
            self.index = _C_INDEX[re.search(r"typedef ([\w ]+?) index_t;", code).group(1)]

        def get_function(self, name):
            def launch(grid, block, args):
                assert len(grid) == 1 and len(block) == 1, "1-D launches"
                assert 1 <= block[0] <= 1024 and 1 <= grid[0] < 2**31, (grid, block)
                run_kernel(self.code, name, self.scalar, self.index, grid[0], block[0], args)
            return launch

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name):
            assert ck.ELEMENTWISE[name] == (in_params, out_params, operation)
            self.name = name

        def __call__(self, *args):
            return EmulatedLauncher().elementwise(self.name, *args)


class EmulatedLauncher:
    """Drop-in for ``cuda_kernels.launcher``: same calls, run on the CPU.

    ``block``/``max_blocks`` shape the launch as CupyLauncher would (blocks
    = min(ceil(total / block), max_blocks), so small values exercise the
    grid-stride loop); ``reverse`` runs the threads in reverse order.
    """

    def __init__(self, block=1, max_blocks=1, reverse=False, ix=None):
        self.block, self.max_blocks, self.reverse = block, max_blocks, reverse
        self.ix = ix            # None: as CupyLauncher chooses (ix_for); "int32"/"int64" to force
        self.calls = []

    def launch(self, name, scalar, index, total, args):
        self.calls.append(name)
        blocks = min((total + self.block - 1) // self.block, self.max_blocks) if total else 0
        source = ck.source_for(scalar, index, self.ix or ck.ix_for(total))
        run_kernel(source, name, scalar, index, blocks, self.block, args, self.reverse)

    def elementwise(self, name, *args):
        """cupy.ElementwiseKernel for same-shape arrays and scalars, from the same spec; the outputs
        given after the inputs (any memory layout) are written, as CuPy writes them."""
        self.calls.append(name)
        in_params, out_params, _ = ck.ELEMENTWISE[name]
        ins = [p.split() for p in in_params.split(",")]
        outs = [p.split() for p in out_params.split(",")]
        assert len(args) in (len(ins), len(ins) + len(outs)), \
            f"{name}: {len(args)} arguments for {len(ins)} inputs and {len(outs)} outputs"
        args, given = args[:len(ins)], args[len(ins):]
        shape = numpy.broadcast_shapes(*(a.shape for a in args if isinstance(a, numpy.ndarray)))
        scalar = next(a.dtype.name for (t, _), a in zip(ins, args) if t == "T")
        c_args = []
        for (t, pname), a in zip(ins, args):
            if isinstance(a, numpy.ndarray):
                want = {"T": scalar, "bool": "bool", "uint64": "uint64", "int64": "int64"}[t]
                assert a.dtype.name == want, f"{name}: {pname} is {a.dtype}, expected {want}"
                a = numpy.ascontiguousarray(numpy.broadcast_to(a, shape))
                c_args.append((a, ctypes.c_void_p(a.ctypes.data)))
            elif t == "bool":
                assert type(a) is numpy.bool_, f"{name}: scalar {pname} {type(a)}"
                c_args.append((a, ctypes.c_bool(bool(a))))
            elif t == "int64":
                assert type(a) is numpy.int64, f"{name}: scalar {pname} {type(a)}"
                c_args.append((a, ctypes.c_longlong(int(a))))
            else:
                assert t == "T" and type(a) is numpy.dtype(scalar).type, f"{name}: scalar {pname} {type(a)}"
                c_args.append((a, _CTYPES_OF[scalar](a)))
        results = []
        for k, (t, _) in enumerate(outs):
            dtype = scalar if t == "T" else bool
            # An output given is read and written, as CuPy passes it (an in-place update reads it first).
            out = numpy.array(given[k], dtype=dtype, order="C") if given else numpy.empty(shape, dtype=dtype)
            results.append(out)
            c_args.append((out, ctypes.c_void_p(out.ctypes.data)))
        code = PRELUDE + elementwise_source(name, scalar, [isinstance(a, numpy.ndarray) for a in args])
        lib = _compile(code)
        fn = getattr(lib, name)
        fn.restype = None
        lib.npa_emu_config(1, 1, 0, 0)       # one thread: the grid-stride loop covers every i
        fn(ctypes.c_int64(int(numpy.prod(shape))), *(c for _, c in c_args))
        for out, result in zip(given, results):
            assert out.shape == result.shape and out.dtype == result.dtype, f"{name}: output {out.shape} {out.dtype}"
            out[...] = result
        results = list(given) or results
        return results[0] if len(results) == 1 else tuple(results)


def elementwise_source(name, scalar, array_inputs=None):
    """A kernel doing what cupy.ElementwiseKernel builds from the spec (contiguous operands only):
    each input a value, each output a reference, then the operation, for every i (grid-stride)."""
    in_params, out_params, operation = ck.ELEMENTWISE[name]
    ins = [p.split() for p in in_params.split(",")]
    outs = [p.split() for p in out_params.split(",")]
    array_inputs = array_inputs or [True] * len(ins)
    ctype = {"float32": "float", "float64": "double"}[scalar]
    c_types = {"T": ctype, "bool": "bool", "uint64": "unsigned long long", "int64": "long long"}
    decl, body = [], []
    for (t, pname), is_array in zip(ins, array_inputs):
        cty = c_types[t]
        if is_array:
            decl.append(f"const {cty}* _{pname}")
            body.append(f"const {cty} {pname} = _{pname}[i];")
        else:
            decl.append(f"{cty} {pname}")
    for t, pname in outs:
        cty = c_types[t]
        decl.append(f"{cty}* _{pname}")
        body.append(f"{cty}& {pname} = _{pname}[i];")
    return (f"typedef {ctype} T;\n"
            f"extern \"C\" __global__ void {name}(long long n, {', '.join(decl)}) {{\n"
            f"  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;\n"
            f"       i += (long long)blockDim.x * gridDim.x) {{ {' '.join(body)} {operation} }}\n}}\n")


# ----------------------------------------------------------------------------
# NVRTC: compile the source as CuPy will, on a machine without a GPU
# ----------------------------------------------------------------------------

def find_nvrtc():
    """Path of libnvrtc (the pip wheel torch/CuPy bring, or a CUDA toolkit), or None."""
    import ctypes.util
    import glob
    import site
    roots = site.getsitepackages() + [site.getusersitepackages()]
    candidates = []
    for root in roots:
        candidates += sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib", "libnvrtc.so.*")))
    candidates += sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
    candidates = [c for c in candidates if ".alt." not in c and "builtins" not in c]
    found = ctypes.util.find_library("nvrtc")
    return candidates[0] if candidates else found


def nvrtc_compile(code: str, options=("--gpu-architecture=compute_90",)):
    """``(ok, log, ptx)`` from compiling ``code`` with NVRTC."""
    import glob
    path = find_nvrtc()
    # libnvrtc opens its builtins library by name: load it first from the same folder.
    for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*")):
        if ".alt." not in builtins:
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(path)
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), b"npalexnet.cu", 0, None, None)
    assert rc == 0, f"nvrtcCreateProgram: {rc}"
    opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
    ok = lib.nvrtcCompileProgram(prog, len(options), opts) == 0
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    ptx = b""
    if ok:
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, buf)
        ptx = buf.value
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return ok, log.value.decode(errors="replace"), ptx.decode(errors="replace")
