"""Transfer learning: tasks on some classes, copying a trained network's first layers, freezing,
ImageNet starts, and the run records and CLI that drive them."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO
from labkit import data, models, train


def values(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_task_keeps_its_classes_relabelled_in_order_and_limits_images(real_data_dir):
    index = data.oxflower17_index(real_data_dir)
    rows = data.select_task(index, "train", ["sunflower", 0], images_per_class=10)
    assert len(rows) == 20 and sorted(rows["label"].unique()) == [0, 1]
    assert set(rows.loc[rows["label"] == 0, "class_name"]) == {"sunflower"}
    ten, forty = (set(data.select_task(index, "train", [9, 0], n)["image_id"]) for n in (10, 40))
    assert ten < forty   # the 10 images are among the 40: the curves compare like with like
    assert data.class_names([9, 0]) == ("sunflower", "daffodil")
    for bad in ([3], [3, 3], [17, 2], ["rose", 1]):
        with pytest.raises(ValueError):
            data.resolve_classes(bad)


def test_copy_up_to_copies_the_first_layers_and_leaves_the_rest_new():
    from test_reference import randomize

    source = randomize(models.build("resnet18", num_classes=9, input_shape=(32, 32, 3)))
    fresh = models.build("resnet18", num_classes=8, input_shape=(32, 32, 3))
    target = models.build("resnet18", num_classes=8, input_shape=(32, 32, 3))
    target.set_weights(fresh.get_weights())
    pairs = models.copy_up_to(source, target, "conv3")
    assert pairs[-1][1] == "conv3_block2_2_bn" and all(not b.startswith(("conv4", "conv5", "fc")) for _, b in pairs)
    assert same(values(target.get_layer("conv3_block2_2_conv")), values(source.get_layer("conv3_block2_2_conv")))
    assert same(values(target.get_layer("conv4_block1_1_conv")), values(fresh.get_layer("conv4_block1_1_conv")))
    models.copy_up_to(source, target)   # everything but the classifier, which has other classes
    assert same(values(target.get_layer("conv5_block2_2_bn")), values(source.get_layer("conv5_block2_2_bn")))
    assert same(values(target.get_layer("fc")), values(fresh.get_layer("fc")))
    with pytest.raises(ValueError):
        models.layers_up_to(target, "inception_3a")


def test_frozen_layers_do_not_change_and_their_batch_norm_runs_in_inference_mode():
    keras.utils.set_random_seed(0)
    # zero_init_residual=False: a residual branch that starts at zero passes no gradient to its first convs
    net = models.build("resnet18", num_classes=5, input_shape=(32, 32, 3), zero_init_residual=False)
    frozen = models.freeze_up_to(net, "conv3")
    assert "conv1_conv" in frozen and "conv3_block2_2_bn" in frozen and "conv4_block1_1_conv" not in frozen
    before = {layer.name: values(layer) for layer in net.layers if layer.weights}
    net.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(1).normal(3.0, 2.0, (8, 32, 32, 3)).astype("float32")  # far from BN's statistics
    net.train_on_batch(x, np.arange(8) % 5)
    for layer in net.layers:
        if layer.weights:
            unchanged = same(values(layer), before[layer.name])
            assert unchanged == (layer.name in frozen), layer.name   # moving statistics included
    models.freeze_batch_norm(net)
    assert all(not layer.trainable for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization))


def small(real_data_dir, out, **kwargs):
    settings = dict(profile="smoke", image_size=32, batch_size=8, epochs=1, steps_per_epoch=2, out_dir=out,
                    data_dir=real_data_dir, verbose=0, augmentation="none")
    return train.train("resnet18", **{**settings, **kwargs})


@pytest.mark.slow
def test_a_run_transfers_from_a_base_run_through_the_cli(real_data_dir, tmp_path):
    base = small(real_data_dir, tmp_path / "base", classes=[0, 1, 2, 3])
    assert base.results["test_images"] == 4 * 20 and base.results["config"]["classes"] == [0, 1, 2, 3]
    assert base.evaluation.class_names == data.class_names([0, 1, 2, 3]) and base.results["start"] is None

    out = tmp_path / "target"
    command = [sys.executable, "-m", "labkit", "train", "--model", "resnet18", "--profile", "smoke",
               "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--augmentation", "none",
               "--classes", "sunflower", "daisy", "pansy", "--images-per-class", "5",
               "--init", str(base.out_dir), "--freeze-until", "conv4", "--out", str(out),
               "--data-dir", str(real_data_dir)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    start = record["start"]
    assert start["weights"] == str(base.out_dir) and "conv4_block2_2_bn" in start["frozen"]
    assert "conv5_block1_1_conv" in start["layers_copied"] and "fc" not in start["layers_copied"]
    assert start["trainable_params"] + start["frozen_params"] == record["params"]
    assert record["test_images"] == 3 * 20 and record["config"]["images_per_class"] == 5

    trained = models.transfer.weighted_layers(keras.saving.load_model(out / "best.keras"))
    source = {layer.name: layer for layer in models.transfer.weighted_layers(base.model)}
    by_name = {layer.name: layer for layer in trained}
    assert same(values(by_name["conv2_block1_1_conv"]), values(source["conv2_block1_1_conv"]))   # frozen
    assert not same(values(by_name["conv5_block2_2_conv"]), values(source["conv5_block2_2_conv"]))  # fine-tuned
    base_norm = base.model.get_layer("normalize")
    target_norm = keras.saving.load_model(out / "best.keras").get_layer("normalize")
    assert np.allclose(keras.ops.convert_to_numpy(base_norm.mean), keras.ops.convert_to_numpy(target_norm.mean))


def test_transfer_settings_are_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError):
        train.make_config("resnet18", "smoke", init=str(tmp_path / "no-such-run"))
    with pytest.raises(ValueError):
        train.make_config("alexnet", "smoke", weights="imagenet")
    with pytest.raises(ValueError):
        train.make_config("resnet50", "smoke", weights="imagenet", init=str(tmp_path))
    with pytest.raises(ValueError):
        train.make_config("resnet18", "smoke", transfer_layers="conv3")
    cfg = train.make_config("resnet50", "smoke", weights="imagenet", classes=["daisy", "pansy"], freeze_until="conv4")
    assert cfg.num_classes == 2 and cfg.classes == [10, 16]
    assert "from-imagenet" in train.run_name(cfg) and "frozen-to-conv4" in train.run_name(cfg)


@pytest.mark.slow
def test_a_run_from_imagenet_weights_uses_their_preprocessing(real_data_dir, tmp_path, monkeypatch):
    from test_reference import _publish

    keras_home = tmp_path / "keras" / "models"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    _publish(reference, keras_home, monkeypatch, "resnet50", top=False)
    run = train.train("resnet50", profile="smoke", image_size=32, batch_size=8, epochs=1, steps_per_epoch=1,
                      out_dir=tmp_path / "run", data_dir=real_data_dir, verbose=0, augmentation="none",
                      weights="imagenet", freeze_batch_norm=True, classes=[0, 1])
    assert run.results["start"]["weights"] == "imagenet" and "fc" not in run.results["start"]["layers_copied"]
    assert any(isinstance(layer, models.layers.CaffePreprocessing) for layer in run.model.layers)
    assert "conv1_bn" in run.results["start"]["frozen"]
