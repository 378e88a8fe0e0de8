"""Launchers (local, SLURM, Cloud TPU pods, GKE) and the sweep runner; see the README."""
