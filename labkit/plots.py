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


def learning_curves(history, title: str | None = None):
    """Loss and accuracy per epoch, training against validation: the gap between the two curves
    is overfitting. ``history`` is ``run.history`` (a DataFrame) or a Keras ``History``."""
    import pandas as pd

    plt = _plt()
    h = history if isinstance(history, pd.DataFrame) else pd.DataFrame(history.history)
    if "epoch" not in h:
        h = h.assign(epoch=range(len(h)))
    acc = "accuracy" if "accuracy" in h else "predictions_accuracy"
    val_acc = "val_" + acc
    epochs = h["epoch"] + 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    ax1.plot(epochs, h["loss"], label="training")
    if "val_loss" in h:
        ax1.plot(epochs, h["val_loss"], label="validation")
    ax1.set_xlabel("epoch"); ax1.set_ylabel("loss"); ax1.legend(); ax1.set_title("Loss")
    ax2.plot(epochs, h[acc], label="training")
    if val_acc in h:
        ax2.plot(epochs, h[val_acc], label="validation")
        best = h[val_acc].idxmax()
        ax2.scatter([epochs[best]], [h[val_acc][best]], color="tab:red", zorder=3,
                    label=f"best validation {h[val_acc][best]:.1%}")
    ax2.set_ylim(0, 1); ax2.set_xlabel("epoch"); ax2.set_ylabel("accuracy"); ax2.legend(); ax2.set_title("Accuracy")
    if "learning_rate" in h and h["learning_rate"].nunique() > 1:
        ax3 = ax2.twinx()
        ax3.plot(epochs, h["learning_rate"], color="grey", lw=0.8, ls="--")
        ax3.set_yscale("log"); ax3.set_ylabel("learning rate (dashed)", color="grey")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(cm, class_names, normalize: bool = True, title: str | None = None):
    """Rows: true class, columns: predicted class; the diagonal is what the model gets right."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(0.45 * n + 2.5, 0.45 * n + 1.5))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(n)); ax.set_xticklabels(class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n)); ax.set_yticklabels(class_names, fontsize=8)
    ax.set_xlabel("predicted"); ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class" if normalize else "images")
    ax.set_title(title or "Confusion matrix")
    fig.tight_layout()
    return fig


def misclassified(evaluation, images, max_images: int = 16, columns: int = 8):
    """The test images the model got wrong most confidently: true class, predicted class and
    its probability. ``images`` are the evaluated images in the same order
    (``labkit.evaluate.split_arrays``)."""
    plt = _plt()
    wrong = np.flatnonzero(evaluation.predictions != evaluation.labels)
    confidence = evaluation.probabilities[wrong, evaluation.predictions[wrong]]
    wrong = wrong[np.argsort(-confidence, kind="stable")][:max_images]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off"); ax.text(0.5, 0.5, "no misclassified images", ha="center")
        return fig
    rows = int(np.ceil(len(wrong) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    names = evaluation.class_names
    for ax, i in zip(axes.ravel(), wrong):
        image = np.asarray(images[i])
        ax.imshow(image if image.dtype == np.uint8 else np.clip(image, 0, 1))
        p = evaluation.predictions[i]
        ax.set_title(f"true: {names[evaluation.labels[i]]}\npred: {names[p]} ({evaluation.probabilities[i, p]:.0%})",
                     fontsize=7, color="tab:red")
    fig.tight_layout()
    return fig


def first_layer_filters(model, layer_name: str | None = None, max_filters: int = 64, columns: int = 16):
    """The first convolution's filters as little RGB images (AlexNet's Figure 3): after training
    they become edge, colour and blob detectors."""
    import keras

    plt = _plt()
    layer = find_layer(model, layer_name) if layer_name else next(
        l for l in _all_layers(model) if isinstance(l, keras.layers.Conv2D))
    kernel = keras.ops.convert_to_numpy(layer.kernel)  # (k, k, in, out)
    kernel = kernel[..., :max_filters]
    n = kernel.shape[-1]
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(0.8 * columns, 0.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:n]):
        f = kernel[..., i]
        f = (f - f.min()) / max(f.max() - f.min(), 1e-8)
        ax.imshow(f if f.shape[-1] == 3 else f[..., 0], cmap=None if f.shape[-1] == 3 else "gray",
                  interpolation="nearest")
    fig.suptitle(f"{layer.name}: {n} filters of {kernel.shape[0]}x{kernel.shape[1]}x{kernel.shape[2]}")
    return fig


def find_layer(model, name: str):
    """A layer by name, also inside a wrapped architecture (training models nest one)."""
    for layer in _all_layers(model):
        if layer.name == name:
            return layer
    raise ValueError(f"no layer named {name!r}; layers include {[l.name for l in _all_layers(model)][:15]} ...")


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _all_layers(layer)
        else:
            yield layer


def feature_maps(model, layer_name: str | None, image, max_maps: int = 32, columns: int = 8):
    """What one layer sees in one image: its first ``max_maps`` feature maps. ``layer_name=None``:
    the first convolution (whatever a network you wrote named it).

    ``model`` is an architecture, or a training model that wraps one (input -> augmentation ->
    normalisation -> architecture): the image then goes through the wrapper's layers first.
    """
    import keras

    plt = _plt()
    if layer_name is None:
        layer_name = next(l for l in _all_layers(model) if isinstance(l, keras.layers.Conv2D)).name
    x = np.asarray(image, dtype=np.float32)[None]
    net = model
    if layer_name not in [l.name for l in model.layers]:
        for layer in model.layers[1:]:
            if isinstance(layer, keras.Model) and layer_name in [l.name for l in layer.layers]:
                net = layer
                break
            x = layer(x, training=False)  # preprocessing in front of the architecture
        else:
            raise ValueError(f"no layer named {layer_name!r}; layers include "
                             f"{[l.name for l in _all_layers(model)][:12]} ...")
    probe = keras.Model(net.inputs, net.get_layer(layer_name).output)
    maps = keras.ops.convert_to_numpy(probe(x, training=False))[0]  # any backend (a torch tensor keeps its grad)
    n = min(max_maps, maps.shape[-1])
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:n]):
        ax.imshow(maps[..., i], cmap="viridis")
    fig.suptitle(f"{layer_name}: {n} of {maps.shape[-1]} feature maps ({maps.shape[0]}x{maps.shape[1]})")
    return fig


def augmentation_grid(image, transforms: dict, samples: int = 5, seed: int = 0):
    """One row per transformation: the original, then ``samples`` random outputs.
    ``transforms`` maps a name to a function ``f(batch, rng) -> batch`` (batches of one image)."""
    plt = _plt()
    rng = np.random.default_rng(seed)
    image = np.asarray(image)
    fig, axes = plt.subplots(len(transforms), samples + 1, figsize=(1.7 * (samples + 1), 1.8 * len(transforms)),
                             squeeze=False)
    for row, (name, fn) in zip(axes, transforms.items()):
        row[0].imshow(_displayable(image))
        row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        for ax in row[1:]:
            ax.imshow(_displayable(fn(image[None], rng)[0]))
        for ax in row:
            ax.set_xticks([]); ax.set_yticks([])
    axes[0][0].set_title("original", fontsize=9)
    fig.tight_layout()
    return fig


def _displayable(image):
    import keras

    image = image if isinstance(image, np.ndarray) else keras.ops.convert_to_numpy(image)
    return image if image.dtype == np.uint8 else np.clip(image, 0, 1)


def compare_curves(histories: dict, metric: str = "accuracy", title: str | None = None):
    """Training (dashed) and validation (solid) ``metric`` of several runs on one chart: the gap
    between a run's two curves is its overfitting."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for (name, h), colour in zip(histories.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        epochs = h["epoch"] + 1
        ax.plot(epochs, h[metric], ls="--", color=colour, label=f"{name}: training")
        ax.plot(epochs, h[f"val_{metric}"], color=colour, label=f"{name}: validation")
    ax.set_xlabel("epoch"); ax.set_ylabel(metric); ax.set_ylim(0, 1.02); ax.legend(fontsize=8)
    ax.set_title(title or f"Training vs validation {metric}")
    fig.tight_layout()
    return fig


def degradation(histories: dict, metric: str = "accuracy", title: str | None = None):
    """He et al.'s Figure 6 for our runs: plain networks on the left, residual ones on the right;
    training ``metric`` dashed, validation solid, one colour per depth. ``histories`` maps
    ``(residual, depth)`` to a run's history."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    depths = sorted({depth for _, depth in histories})
    colours = dict(zip(depths, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, residual in zip(axes, (False, True)):
        for depth in depths:
            h = histories.get((residual, depth))
            if h is None:
                continue
            name = f"{'ResNet' if residual else 'plain'}-{depth}"
            ax.plot(h["epoch"] + 1, h[metric], ls="--", color=colours[depth], label=f"{name}: training")
            if f"val_{metric}" in h:
                ax.plot(h["epoch"] + 1, h[f"val_{metric}"], color=colours[depth], label=f"{name}: validation")
        ax.set_title("residual networks" if residual else "plain networks")
        ax.set_xlabel("epoch"); ax.legend(fontsize=8)
    axes[0].set_ylabel(metric); axes[0].set_ylim(0, 1.02)
    fig.suptitle(title or "Deeper plain networks train worse; residual ones do not")
    fig.tight_layout()
    return fig


def gradient_norms(tables: dict, title: str | None = None):
    """Gradient norm per layer (``labkit.inspect.gradient_norms``), input side on the left, for
    several networks (``tables`` maps a name to its table), on a log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name, table in tables.items():
        ax.plot(table["depth"], table["gradient_norm"], marker=".", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = next to the input)"); ax.set_ylabel("gradient norm of the kernel")
    ax.set_title(title or "How strongly the loss pulls on each layer"); ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_bubbles(table, x: str = "gmacs", y: str = "test_top1", size: str = "params", label: str = "model",
                     title: str | None = None):
    """The slides' ImageNet chart for our runs: accuracy against operations, bubble area
    proportional to the parameter count."""
    plt = _plt()
    rows = table.dropna(subset=[x, y])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    area = 2000 * rows[size] / max(rows[size].max(), 1)
    ax.scatter(rows[x], rows[y], s=area, alpha=0.45, edgecolor="k")
    # labels of points that nearly coincide (ResNet-18 and SE-ResNet-18) are stacked, not overprinted
    span = max(float(rows[x].max() - rows[x].min()), 1e-9) if len(rows) else 1.0
    placed = []
    for _, r in rows.sort_values([x, y]).iterrows():
        near = sum(abs(r[x] - px) < 0.06 * span and abs(r[y] - py) < 0.04 for px, py in placed)
        ax.annotate(r[label], (r[x], r[y]), xytext=(6, 6 + 12 * near), textcoords="offset points", fontsize=9)
        placed.append((r[x], r[y]))
    ax.set_xlabel({"gmacs": "operations per image (G multiply-accumulates)",
                   "params_m": "parameters (millions)"}.get(x, x))
    ax.set_ylabel("test top-1 accuracy" if y == "test_top1" else y)
    ax.set_ylim(0, 1)
    if len(rows) and rows[x].max() > 5 * rows[x].min() > 0:
        ax.set_xscale("log")  # operations and parameters span orders of magnitude
    ax.set_title(title or "Accuracy vs operations (bubble area: parameters)")
    fig.tight_layout()
    return fig


def transfer_curves(table, title: str | None = None):
    """Yosinski et al.'s Figure 2 for a transfer experiment: test accuracy on the target task
    against the number of layers (stages) copied from the base network, frozen and fine-tuned,
    with training from scratch as the baseline; one panel per number of training images per class.
    ``table``: one row per run with ``images_per_class``, ``variant`` (``scratch``, ``frozen``,
    ``fine-tuned``, or another name, drawn as a single point at the right), ``layers`` (how many
    were copied; the names in ``layer``) and ``test_top1``."""
    plt = _plt()
    counts = sorted(table["images_per_class"].unique())
    fig, axes = plt.subplots(1, len(counts), figsize=(5.2 * len(counts), 3.8), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], counts):
        rows = table[table["images_per_class"] == n]
        scratch = rows[rows["variant"] == "scratch"]["test_top1"]
        for variant, style in (("frozen", "o-"), ("fine-tuned", "s-")):
            part = rows[rows["variant"] == variant].sort_values("layers")
            if len(part):
                ax.plot([0, *part["layers"]], [scratch.mean(), *part["test_top1"]] if len(scratch) else
                        part["test_top1"], style, label=f"copied, {variant}")
        if len(scratch):
            ax.axhline(scratch.mean(), color="grey", ls="--", lw=1, label="from scratch")
        others = rows[~rows["variant"].isin(["scratch", "frozen", "fine-tuned"])]
        for _, row in others.iterrows():
            ax.plot([row["layers"]], [row["test_top1"]], "*", ms=11, label=row["variant"])
        named = rows[rows["variant"] == "frozen"].sort_values("layers")
        ax.set_xticks([0, *named["layers"]], ["none", *named["layer"]] if len(named) else None)
        ax.set_xlabel("layers copied from the base network (up to)")
        ax.set_title(f"{n} training images per class")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test top-1 on the target task")
    axes[0][-1].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- lab 10: what a network learned

def image_grid(images, titles=None, columns: int = 6, title: str | None = None, cell: float = 1.7):
    """Images (floats in [0, 1] or uint8) in a grid, each with an optional title."""
    plt = _plt()
    images = list(images)
    titles = list(titles) if titles is not None else [""] * len(images)
    rows = int(np.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(cell * columns, (cell + 0.35) * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, text in zip(axes.ravel(), images, titles):
        image = np.asarray(image)
        ax.imshow(image if image.dtype == np.uint8 else np.clip(image, 0, 1))
        ax.set_title(text, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def filters_side_by_side(models: dict, max_filters: int = 32, columns: int = 8):
    """The first convolution's filters of several networks, one panel each (lab 10): what each
    architecture learned to look for first, at its own filter size."""
    import keras

    plt = _plt()
    fig = plt.figure(figsize=(3.2 * len(models), 3.8))
    outer = fig.add_gridspec(1, len(models), wspace=0.15)
    for k, (name, model) in enumerate(models.items()):
        layer = next(l for l in _all_layers(model) if isinstance(l, keras.layers.Conv2D))
        kernel = keras.ops.convert_to_numpy(layer.kernel)[..., :max_filters]
        n, rows = kernel.shape[-1], int(np.ceil(min(max_filters, kernel.shape[-1]) / columns))
        inner = outer[k].subgridspec(rows + 1, columns, hspace=0.08, wspace=0.08,
                                     height_ratios=[0.35] + [1] * rows)
        head = fig.add_subplot(inner[0, :])
        head.axis("off")
        head.text(0.5, 0.0, f"{name}\n{n} of {layer.kernel.shape[-1]} filters, "
                  f"{kernel.shape[0]}x{kernel.shape[1]}", ha="center", va="bottom", fontsize=9)
        for i in range(rows * columns):
            ax = fig.add_subplot(inner[1 + i // columns, i % columns])
            ax.axis("off")
            if i < n:
                f = kernel[..., i]
                f = (f - f.min()) / max(f.max() - f.min(), 1e-8)
                ax.imshow(f if f.shape[-1] == 3 else f[..., 0], cmap=None if f.shape[-1] == 3 else "gray",
                          interpolation="nearest")
    return fig


def explanations(images, maps: dict, titles=None, alpha: float = 0.5):
    """One row per image: the image, then each explanation (``maps``: method name -> (N, H, W) in
    [0, 1]) laid over it as a heat map."""
    plt = _plt()
    images = np.asarray(images)
    columns = 1 + len(maps)
    fig, axes = plt.subplots(len(images), columns, figsize=(2.2 * columns, 2.3 * len(images)), squeeze=False)
    for i, image in enumerate(images):
        shown = np.clip(image, 0, 1)
        axes[i, 0].imshow(shown)
        axes[i, 0].set_title(titles[i] if titles is not None else "", fontsize=8)
        for j, (method, values) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(shown)
            axes[i, j].imshow(values[i], cmap="jet", alpha=alpha, vmin=0, vmax=max(float(values[i].max()), 1e-8))
            if i == 0:
                axes[i, j].set_title(method, fontsize=9)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def embedding(xy, labels, class_names, title: str | None = None):
    """A 2-D embedding (t-SNE) of feature vectors, one colour and marker per class."""
    plt = _plt()
    xy, labels = np.asarray(xy), np.asarray(labels)
    fig, ax = plt.subplots(figsize=(8, 6.5))
    colours = plt.get_cmap("tab20")
    for c in sorted(set(labels.tolist())):
        points = xy[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=18, color=colours(c % 20), marker="os^D"[c // 5 % 4],
                   label=class_names[c])
    ax.set_xticks([]); ax.set_yticks([])
    ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(title or "t-SNE of the penultimate layer's features (test images)")
    fig.tight_layout()
    return fig
