"""Importing ``registry.json`` files: ``parse`` (documents -> rows), ``store`` (rows -> tables), ``entry`` (the imports).

``registry.legacy`` re-exports the names callers used before this package existed.
"""
