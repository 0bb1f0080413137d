"""Shared by every test directory: this folder is on ``sys.path`` (pytest's rootdir-based
``prepend`` import mode puts a conftest's folder there), so ``import childproc`` works."""
