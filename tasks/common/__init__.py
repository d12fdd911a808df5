"""Helpers every stage shares: data paths, atomic writes, output folders, MLflow tracking, locks."""
