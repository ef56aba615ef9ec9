"""Training a network the user wrote (train(builder=...)) with a recipe written as Keras code
(train(recipe=...)); telling a student's network from labkit's reference."""
import json

import keras
import numpy as np
import pytest
from keras import layers

from labkit import models, train
from labkit.models import provenance, resnet
from labkit.train.network import OWN, REFERENCE, choose_network


def tiny(num_classes=17, input_shape=(32, 32, 3), width=4):
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(width, 3, strides=2, activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


def tiny_with_aux(num_classes=17, input_shape=(32, 32, 3), aux_classifiers=False):
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    main = layers.Dense(num_classes, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    if not aux_classifiers:
        return keras.Model(inputs, main)
    aux = layers.Dense(num_classes, activation="softmax")(layers.GlobalMaxPooling2D()(x))
    return keras.Model(inputs, [main, aux])


def calls_the_reference(num_classes=17, input_shape=(32, 32, 3)):
    from labkit.models.resnet import residual_block as block  # renamed: still seen
    inputs = keras.Input(input_shape)
    x = block(layers.Conv2D(8, 3)(inputs), 8, 1, "basic", "b")
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(layers.GlobalAveragePooling2D()(x)))


def unfinished(num_classes=17, input_shape=(32, 32, 3)):
    raise NotImplementedError("write the network here")


def sgd_recipe(epochs, steps_per_epoch):
    return train.Recipe(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                        loss=keras.losses.SparseCategoricalCrossentropy())


def test_reference_calls_are_seen_through_any_name_and_layers_are_allowed():
    from labkit.models.layers import LocalResponseNormalization

    def with_lrn(num_classes=17, input_shape=(32, 32, 3)):
        inputs = keras.Input(input_shape)
        x = LocalResponseNormalization()(layers.Conv2D(8, 3)(inputs))
        return keras.Model(inputs, layers.Dense(num_classes)(layers.Flatten()(x)))

    assert provenance.reference_calls(tiny)[1] == []
    assert provenance.reference_calls(with_lrn)[1] == []
    assert "labkit.models.resnet.residual_block" in provenance.reference_calls(calls_the_reference)[1]
    assert "labkit.models.build" in provenance.reference_calls(models.build, "lenet5")[1]
    alias = resnet.residual_block
    assert provenance.reference_calls(lambda: alias(keras.Input((8, 8, 4)), 4, 1, "basic", "x"))[1]


def _copy_of_labkit(tmp_path, module, name: str, filename: str):
    """``module.name`` compiled from labkit's source under another file name (a copy, or labkit
    installed through a symlinked path)."""
    import inspect

    namespace = {}
    exec(compile(inspect.getsource(module), str(tmp_path / filename), "exec"), namespace)
    return namespace[name]


def test_labkit_code_is_recognised_by_its_content_not_its_file(tmp_path):
    from labkit.models import alexnet

    copied = _copy_of_labkit(tmp_path, alexnet, "alexnet", "my_own.py")
    assert provenance.reference_calls(copied, num_classes=3, input_shape=(67, 67, 3))[1][0] == \
        "labkit.models.alexnet.alexnet"
    # the package's folder reached through a symlink: another file name for the same code
    link = tmp_path / "site"
    link.symlink_to(provenance._PACKAGE)
    linked = _copy_of_labkit(link, resnet, "residual_block", "resnet.py")
    assert provenance.reference_calls(lambda: linked(keras.Input((8, 8, 4)), 4, 1, "basic", "x"))[1]


def test_switching_the_hook_off_or_calling_from_a_thread_is_seen():
    import sys
    import threading

    def hook_off(num_classes=17, input_shape=(32, 32, 3)):
        sys.setprofile(None)
        return models.build("lenet5", num_classes=num_classes)

    def in_a_thread(num_classes=17, input_shape=(32, 32, 3)):
        built = {}
        worker = threading.Thread(target=lambda: built.setdefault("net", models.build("lenet5", num_classes=num_classes)))
        worker.start()
        worker.join()
        return built["net"]

    for cheat in (hook_off, in_a_thread):
        net, called = provenance.reference_calls(cheat)
        assert isinstance(net, keras.Model) and called, cheat.__name__
    assert sys.getprofile() is None


def test_fingerprint_ignores_layer_names_but_not_the_architecture():
    first, second = tiny(), tiny()  # Keras numbers the layers of the second differently
    assert [l.name for l in first.layers] != [l.name for l in second.layers]
    assert provenance.fingerprint(first) == provenance.fingerprint(second)
    assert provenance.fingerprint(tiny(width=5)) != provenance.fingerprint(first)
    assert provenance.fingerprint(tiny(num_classes=10)) != provenance.fingerprint(first)


@pytest.mark.parametrize("builder, source", [(tiny, OWN), (unfinished, REFERENCE), (calls_the_reference, REFERENCE),
                                             (lambda **_: None, REFERENCE),
                                             (lambda num_classes, input_shape: tiny(num_classes, (40, 40, 3)), REFERENCE),
                                             (lambda num_classes, input_shape: tiny(5, input_shape), REFERENCE)])
def test_choose_network_trains_only_a_finished_network_of_ones_own(builder, source):
    cfg = train.make_config("resnet18", "smoke", image_size=32)
    messages = []
    network = choose_network(cfg, builder, log=messages.append)
    assert network.source == source
    if source == OWN:
        assert network.tag == f"own-{network.fingerprint}" and not messages and network.note is None
    else:  # labkit's resnet18 instead, said and recorded
        assert network.tag is None and len(messages) == 1 and network.note
        assert network.build(cfg).name == models.build("resnet18", input_shape=(32, 32, 3)).name


def test_own_network_and_recipe_train_record_and_rerun_without_retraining(real_data_dir, tmp_path, capsys):
    settings = dict(profile="smoke", image_size=32, batch_size=16, epochs=1, steps_per_epoch=2,
                    data_dir=real_data_dir, verbose=0)
    run = train.train("resnet18", builder=tiny, recipe=sgd_recipe, out_dir=tmp_path / "mine", **settings)
    record = json.loads((run.out_dir / "results.json").read_text())
    assert record["network"]["source"] == OWN and record["network"]["builder"] == "tiny"
    assert record["params"] == models.count_trainable(tiny())
    assert record["config"]["network"] == f"own-{record['network']['fingerprint']}"
    assert record["config"]["recipe"].startswith("custom-")
    assert record["recipe"]["optimizer"]["class_name"] == "SGD"
    assert record["recipe"]["optimizer"]["config"]["learning_rate"] == pytest.approx(0.05)
    # the same code again (new layer names) is the same run: returned, not retrained
    again = train.train("resnet18", builder=tiny, recipe=sgd_recipe, out_dir=tmp_path / "mine", **settings)
    assert again.results["finished"] == record["finished"]
    # the default folder names say whose network and which recipe
    cfg = train.make_config("resnet18", "smoke", image_size=32)
    tagged = train.run_name(dataclasses_replace(cfg, network="own-12345678", recipe="custom-abcdef01"))
    assert tagged.startswith(train.run_name(cfg)) and "own-12345678" in tagged and "recipe-abcdef01" in tagged


def dataclasses_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)


def test_a_recipe_equal_to_the_profiles_keeps_the_profiles_run_name():
    cfg = train.make_config("alexnet", "smoke")
    assert cfg.optimizer == "sgd"

    def papers(epochs, steps_per_epoch):
        return train.Recipe(
            optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, weight_decay=5e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.1,
                                                         patience=5, min_lr=1e-5)])

    from labkit.train.engine import _recipe_tag

    assert _recipe_tag(cfg, papers, outputs=1) is None
    assert _recipe_tag(cfg, sgd_recipe, outputs=1).startswith("custom-")


def test_recipe_objects_are_checked_and_copied_for_each_compile():
    with pytest.raises(TypeError):
        train.Recipe(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy())
    fixed = train.Recipe(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(),
                         [keras.callbacks.ReduceLROnPlateau()])
    fn = train.recipe.as_recipe_function(fixed)
    first, second = fn(1, 1), fn(1, 1)
    assert first.optimizer is not second.optimizer and first.callbacks[0] is not second.callbacks[0]
    model = tiny()
    shared = keras.optimizers.SGD()
    model.compile(shared, "sparse_categorical_crossentropy")
    model.train_on_batch(np.zeros((2, 32, 32, 3)), np.zeros((2,)))
    with pytest.raises(ValueError):
        train.recipe.make(lambda epochs, steps_per_epoch: train.Recipe(shared, keras.losses.MeanSquaredError()), 1, 1)


def test_own_network_with_an_auxiliary_head_gets_the_recipes_loss_weight():
    cfg = train.make_config("googlenet", "smoke", image_size=32, model_options={"aux_classifiers": True})
    network = choose_network(cfg, tiny_with_aux)
    assert network.source == OWN and network.outputs == 2
    model, inference, net, _ = train.build_training_model(cfg, np.zeros(3), np.ones(3), network)
    assert model.output_names == ["predictions", "aux1"] and len(inference.outputs) == 1

    def weighted(epochs, steps_per_epoch):
        return train.Recipe(keras.optimizers.SGD(), keras.losses.SparseCategoricalCrossentropy(), aux_loss_weight=0.5)

    train.compile_model(model, cfg, steps_per_epoch=1, recipe_fn=weighted)
    images, labels = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype="uint8"), np.arange(4)
    logs = model.evaluate(images, (labels, labels), verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["predictions_loss"] + 0.5 * logs["aux1_loss"], rel=1e-4)


LAB_RECIPES = {"02_alexnet": ("alexnet", "alexnet_recipe", {}), "03_vgg": ("vgg11", "vgg_recipe", {}),
               "04_googlenet": ("googlenet", "googlenet_recipe", {"aux_classifiers": True}),
               "05_resnet": ("resnet18", "recipe", {})}


@pytest.mark.parametrize("lab", sorted(LAB_RECIPES))
@pytest.mark.parametrize("profile", ["gpu", "cpu", "smoke"])
def test_each_labs_recipe_code_is_its_profiles_recipe(lab, profile):
    """The recipe a lab writes as Keras code is the one the profile describes (so the lab's runs are
    the runs the README reports, and they share their folders with the command line's)."""
    import nbformat
    from pathlib import Path

    from labkit.profiles import get_profile
    from labkit.train.engine import _recipe_tag

    model, name, options = LAB_RECIPES[lab]
    cells = nbformat.read(Path(__file__).parents[1] / "notebooks" / f"{lab}.ipynb", as_version=4).cells
    source = next(c.source for c in cells
                  if c.cell_type == "code" and (f"def {name}(" in c.source or f"\n{name} = " in c.source))
    env = {"profile": get_profile(profile)}
    exec(compile(source, f"<{lab} recipe>", "exec"), env)
    cfg = train.make_config(model, profile, model_options=options)
    assert _recipe_tag(cfg, env[name], outputs=3 if options else 1) is None


def test_own_network_under_mixed_precision_gets_float32_outputs():
    """A student's network ends in a bfloat16 softmax under mixed precision; the top-5 metric and
    the loss need float32 (the cpu profile's ResNet-18 computes in bfloat16)."""
    cfg = train.make_config("resnet18", "smoke", image_size=32, mixed_precision=True)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        network = choose_network(cfg, tiny)
        model, inference, _, _ = train.build_training_model(cfg, np.zeros(3), np.ones(3), network)
        train.compile_model(model, cfg, steps_per_epoch=1)
        images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype="uint8")
        logs = model.train_on_batch(images, np.arange(4), return_dict=True)
        assert np.isfinite(logs["loss"]) and str(inference.output.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_lab_07_reuses_the_students_lab_runs_and_says_whose(tmp_path, monkeypatch):
    from labkit import report

    def record(folder, model, size, finished, source=None, options=None, **config):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({
            "model": model, "model_options": options or {}, "profile": "smoke", "image_size": size, "epochs_run": 1,
            "params": 1, "training_seconds": 1.0, "test_top1": 0.5, "test_top5": 1.0, "split_name": "s",
            "finished": finished, "config": config, "network": {"source": source} if source else None}))

    sizes = {model: train.make_config(model, "smoke", model_options=options).image_size
             for model, options in report.LAB_RUNS}
    record("alexnet-labkit", "alexnet", sizes["alexnet"], "2026-01-01T10:00:00")
    record("alexnet-yours", "alexnet", sizes["alexnet"], "2026-01-01T11:00:00", source="own")
    record("vgg11", "vgg11", sizes["vgg11"], "2026-01-01T10:00:00", source="own")
    record("googlenet", "googlenet", sizes["googlenet"], "2026-01-01T10:00:00", source="own",
           options={"aux_classifiers": True})
    record("resnet18", "resnet18", sizes["resnet18"], "2026-01-01T10:00:00", source="own", optimizer="adamw", ema=True)
    record("resnet18-trainval", "resnet18", sizes["resnet18"], "2026-01-02T10:00:00", train_split="trainval")
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("nothing needs training"))
    found = report.lab_runs("smoke", [tmp_path], log=lambda *_: None)
    assert {m: p.name for m, p in found.items()} == {"alexnet": "alexnet-yours", "vgg11": "vgg11",
                                                      "googlenet": "googlenet", "resnet18": "resnet18"}
    table = report.architecture_table("smoke", [tmp_path]).set_index("model")
    assert table.loc["alexnet", "network"] == "yours" and table.loc["resnet18", "recipe"] == "adamw + ema"
