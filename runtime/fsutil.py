"""Filesystem primitives both planes share: hashing a file, writing one atomically."""
