"""facegan: web images -> face crops -> GANs -> face_recognition realism report.

The one import root. Its layers live in the repository's top-level folders and are mapped onto
this package by pyproject.toml ([tool.setuptools] package-dir):

    facegan.config      config/        pydantic configs, errors (the leaf every layer shares)
    facegan.models      models/        the GAN networks
    facegan.evaluation  evaluation/    face detection, embeddings, metrics
    facegan.tasks       tasks/         the steps: a room per stage (acquisition, cropping, training,
                                       evaluating, pipeline), common/ helpers, steps.py the Prefect tasks
    facegan.flows       flows/         the Prefect flows and the `facegan` CLI
    facegan.testing     facegan/testing.py  a loopback HTTP server and LFW sample for tests and benches
"""
