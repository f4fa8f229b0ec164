from setuptools import setup

# Everything else lives in pyproject.toml; setup.py only wires the cffi build.
setup(cffi_modules=["shoal/_native/build.py:ffibuilder"])
