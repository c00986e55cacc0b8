"""The package version, in a module without imports so any module can import it at the top."""

__version__ = "0.1.0"  # also in pyproject.toml (tests/test_package_imports.py ties them)
