"""Figures the labs show: sample grids of the data set (more plots join as the labs grow)."""
from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib.pyplot as plt

    return plt


def sample_grid(index, per_class: int = 4, seed: int = 0, thumb: int = 96, class_names=None):
    """A grid with one row per class and ``per_class`` random images of it (from ``index`` rows).

    ``index`` is ``labkit.data.oxflower17_index()`` or any frame with ``path``, ``label`` and
    ``class_name`` columns. Images are shown as the pipeline sees them: central square crops.
    """
    from PIL import Image, ImageOps

    plt = _plt()
    rng = np.random.default_rng(seed)
    labels = sorted(index["label"].unique())
    label_width, cell = 1.6, 1.3  # inches
    width, height = label_width + cell * per_class, cell * len(labels)
    fig, axes = plt.subplots(len(labels), per_class, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=label_width / width, right=0.99, top=1 - 0.05 / height,
                        bottom=0.05 / height, wspace=0.04, hspace=0.06)
    for row, label in zip(axes, labels):
        rows = index[index["label"] == label]
        picks = rows.iloc[rng.choice(len(rows), size=min(per_class, len(rows)), replace=False)]
        for ax, path in zip(row, picks["path"]):
            with Image.open(path) as img:
                ax.imshow(ImageOps.fit(img.convert("RGB"), (thumb, thumb)))
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        name = class_names[label] if class_names is not None else rows["class_name"].iloc[0]
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return fig


def image_batch(images, labels, class_names, max_images: int = 16, columns: int = 8, title=None):
    """Show a batch from a ``tf.data`` pipeline (floats in [0, 1] or uint8) with class names."""
    plt = _plt()
    images = np.asarray(images)[:max_images]
    labels = np.asarray(labels)[:max_images]
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, label in zip(axes.ravel(), images, labels):
        ax.imshow(image if image.dtype == np.uint8 else np.clip(image, 0, 1))
        ax.set_title(class_names[int(label)], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_budget(table, title: str | None = None, top: int | None = None):
    """Three bar charts from ``labkit.inspect.layer_table``: where the parameters, the operations
    and the activation memory live, layer by layer (the slides' point: parameters in the first
    fully connected layer, operations in the middle convolutions, memory in the first ones)."""
    plt = _plt()
    rows = table[(table["layer"] != "TOTAL") & ((table["params"] > 0) | (table["memory_bytes"] > 0))]
    rows = rows[rows["type"] != "InputLayer"] if top is None else rows.head(top)
    fig, axes = plt.subplots(1, 3, figsize=(15, max(3, 0.28 * len(rows) + 1)), sharey=True)
    y = np.arange(len(rows))
    for ax, column, label, colour in zip(
            axes, ("params", "ops", "memory_bytes"),
            ("parameters (millions)", "multiply-accumulates (millions)", "activation memory per image (KiB)"),
            ("tab:blue", "tab:orange", "tab:green")):
        scale = 1024 if column == "memory_bytes" else 1e6
        values = rows[column].to_numpy(dtype=float) / scale
        ax.barh(y, values, color=colour)
        ax.set_xlabel(label)
        share = 100 * rows[column] / max(rows[column].sum(), 1)
        for yi, v, s in zip(y, values, share):
            if s >= 5:
                ax.text(v, yi, f" {s:.0f}%", va="center", fontsize=8)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(rows["layer"])
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
