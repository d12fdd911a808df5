"""The face-pipeline's steps (stage.py): stage configs, skip checks, the pipeline report."""
