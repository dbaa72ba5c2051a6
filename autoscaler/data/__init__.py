"""Data shipped with the package: the bundled default trace (see the README for its provenance)."""
