"""Evaluate-stage steps: scoring sets of faces (scoring.py) and Table 1 and its report (report.py)."""
