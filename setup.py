from setuptools import Extension, setup

# Everything else lives in pyproject.toml; setup.py only wires the C builds:
# the cffi core (`shoal._native._lib`) and the Record type, which needs the
# CPython API because cffi cannot create Python objects
# (`shoal._native._records`: records.c, and wire.c, the wire form of records
# with their addresses).
setup(
    cffi_modules=["shoal/_native/build.py:ffibuilder"],
    ext_modules=[Extension("shoal._native._records", ["shoal/_native/records.c", "shoal/_native/wire.c"],
                           depends=["shoal/_native/wire.h"],
                           extra_compile_args=["-O2", "-std=gnu11", "-Wall"])],
)
