"""The generator app (a Streamlit page): pick a registered facegan model, generate 10 faces or 1,
download them. Run with `facegan app` (or `streamlit run flows/app_page.py`)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import streamlit as st
from PIL import Image


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(images, stem: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, image in enumerate(images):
            archive.writestr(f"{stem}-{i:02d}.png", png_bytes(image))
    return buffer.getvalue()


@st.cache_resource(show_spinner="loading generator")
def generator(uri: str):
    from facegan.tasks.training.trained_generators import load_generator

    return load_generator(uri, device="cpu")


def tracking_store() -> Path | None:
    """FACEGAN_HOME's sqlite store, or None when MLFLOW_TRACKING_URI names another one."""
    import os

    from facegan.tasks.common.paths import data_home

    return None if os.environ.get("MLFLOW_TRACKING_URI") else data_home() / "mlflow.db"


def main() -> None:
    from facegan.tasks.common import tracking
    from facegan.tasks.training.trained_generators import sample_images

    st.set_page_config(page_title="facegan generator", page_icon=":performing_arts:")
    st.title("facegan: generate faces")
    store = tracking_store()
    if store is not None and not store.is_file():  # never leave an empty store where the page started
        st.warning(
            f"No MLflow store at {store}: train a model with `facegan train` first "
            "(or set FACEGAN_HOME or MLFLOW_TRACKING_URI)."
        )
        return
    models = tracking.registered_models()
    if not models:
        st.warning(
            "No registered facegan model in the MLflow store "
            f"({tracking.tracking_uri()}): train one with `facegan train` first."
        )
        return
    labels = {f"{m['name']} v{m['version']} (run {m['run_id'][:8]})": m for m in models}
    choice = labels[st.selectbox("Registered model", list(labels))]
    count = st.radio("How many faces", [10, 1], horizontal=True)
    seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    uri = f"models:/{choice['name']}/{choice['version']}"
    if st.button("Generate", type="primary"):
        G, meta = generator(uri)
        st.session_state["faces"] = (uri, int(seed), sample_images(G, meta, int(count), seed=int(seed)))
        st.session_state["seed_next"] = int(seed) + 1
    if "faces" not in st.session_state:
        return
    shown_uri, shown_seed, faces = st.session_state["faces"]
    st.caption(f"{len(faces)} faces from {shown_uri}, seed {shown_seed}")
    st.image(list(faces), width=128 if len(faces) > 1 else 256)
    stem = f"{shown_uri[len('models:/') :].replace('/', '-v')}-seed{shown_seed}"
    if len(faces) == 1:
        st.download_button("Download PNG", png_bytes(faces[0]), f"{stem}.png", "image/png")
    else:
        st.download_button("Download PNGs (zip)", zip_bytes(faces, stem), f"{stem}.zip", "application/zip")


main()
