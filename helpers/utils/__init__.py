"""Utilities every stage uses: project paths, atomic and durable files, progress, devices, run info."""
