"""A training run's figures, drawn from its MLflow metric history: the losses and D's outputs by
step, and the realism curves (detection rate, Fréchet ratio, precision/recall) by kimg."""

from __future__ import annotations

from facegan.tasks.common import tracking


def loss_figure(run_id: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, keys, title in ((axes[0], ("loss_d", "loss_g"), "losses"), (axes[1], ("d_x", "d_g_z"), "D(x), D(G(z))")):
        for key in keys:
            points = sorted({m.step: m.value for m in tracking.metric_history(run_id, key)}.items())
            if points:
                ax.plot(*zip(*points), label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:  # a run too short to log has no lines to name
            ax.legend()
    fig.tight_layout()
    return fig


CURVES = (
    ("detection_rate", "detection rate"),
    ("frechet_ratio", "Fréchet ÷ noise floor"),
    ("recall", "recall"),
    ("precision", "precision"),
)


def curves_figure(run_id: str):
    """The curve metrics logged every --score-every steps, against kimg (None when none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kimg = {m.step: m.value for m in tracking.metric_history(run_id, "kimg")}
    series = {key: sorted({m.step: m.value for m in tracking.metric_history(run_id, key)}.items()) for key, _ in CURVES}
    if not series["detection_rate"]:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = ((axes[0], ("detection_rate",)), (axes[1], ("frechet_ratio",)), (axes[2], ("precision", "recall")))
    labels = dict(CURVES)
    for ax, keys in panels:
        for key in keys:
            points = [(kimg.get(step, float("nan")), value) for step, value in series[key]]
            if points:
                ax.plot(*zip(*points), marker="o", label=labels[key])
        ax.set_xlabel("kimg (thousands of real images shown to D)")
        ax.set_title(", ".join(labels[k] for k in keys))
        ax.grid(alpha=0.3)
        if len(keys) > 1 and ax.get_legend_handles_labels()[0]:  # no faces detected: no precision, recall
            ax.legend()
    axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    return fig
