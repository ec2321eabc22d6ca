"""Leaves every stage uses: atomic writes (``atomic``), the metrics rows' vocabulary and files
(``rows``), the cooperative stop (``stop``), the one-line command-line parser (``cli``) and the run
configuration's schema (``schema``). Nothing here imports another part of ``benchmarks``."""
