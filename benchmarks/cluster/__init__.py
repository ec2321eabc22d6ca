"""Slurm: job-array launcher (``launcher``), sweep grids (``sweep``), the dry-run preview
(``preview``) and a single-node test cluster (``up.sh``/``down.sh``)."""
