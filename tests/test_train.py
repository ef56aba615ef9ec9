"""labkit.train, labkit.evaluate, labkit.report and the CLI: train, resume, record, compare."""
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
from keras.ops import convert_to_numpy as to_numpy
import pytest

from labkit import data, evaluate, report, train
from labkit.__main__ import main as cli
from labkit.augment import ten_crops

pytestmark = pytest.mark.slow   # trains or grades runs: long, so it starts first on CI

RECORD_KEYS = {
    "model", "model_options", "params", "profile", "image_size", "batch_size", "split_name", "partition",
    "epochs_run", "seed", "device", "training_seconds", "train_images_per_second", "best_val_accuracy",
    "best_epoch", "test_top1", "test_top5", "test_top1_10crop", "config",
}


class InterruptAt(keras.callbacks.Callback):
    """Simulates a crash or a Colab disconnect when epoch ``epoch`` (0-based) begins."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated disconnect")


class EpochsSeen(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


#: The network these tests train. Resuming, records, budgets and weight averaging do not depend on
#: it, so they train the smallest ResNet that has what they touch (batch norm's moving statistics,
#: shortcuts): lab 05's CIFAR ResNet-8, 78,497 weights for 17 classes. A smoke run of it takes a
#: third of ResNet-18's time (4.4 s against 12.5 s on 2 cores), for CI's 20 minutes.
NET, NET_OPTIONS, NET_PARAMS = "cifarresnet", {"depth": 8}, 78_497


def train_net(**settings):
    """``train.train`` of the tests' network."""
    return train.train(NET, **{"model_options": NET_OPTIONS, **settings})


def small_run(real_data_dir, out_dir, model=NET, **kwargs):
    settings = dict(profile="smoke", image_size=32, batch_size=16, epochs=2, steps_per_epoch=2,
                    out_dir=out_dir, data_dir=real_data_dir, verbose=0, augmentation="light")
    settings.update(kwargs)
    return train_net(**settings) if model == NET else train.train(model, **settings)


def test_overfits_one_small_batch(real_data_dir):
    cfg = train.make_config(NET, "smoke", image_size=32, batch_size=16, augmentation="none", model_options=NET_OPTIONS,
                            optimizer="adamw", warmup_epochs=0, weight_decay=0.0, label_smoothing=0.0)
    images, labels = next(iter(data.oxflower17("train", 32, 16, data_dir=real_data_dir, seed=1, dtype="uint8")))
    model, _, _, _ = train.build_training_model(cfg, *train.channel_statistics(
        data.oxflower17("train", 32, 16, data_dir=real_data_dir, shuffle=False)))
    train.compile_model(model, cfg, steps_per_epoch=40)
    first = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    model.fit(images, labels, epochs=40, batch_size=16, verbose=0)
    last = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    assert last < first / 10, (first, last)


def test_training_and_inference_models_share_the_architecture():
    cfg = train.make_config("resnet18", "smoke", image_size=32, batch_size=4, augmentation="standard")
    training, inference, net, _ = train.build_training_model(cfg, np.full(3, 0.4), np.full(3, 0.05))
    assert training.inputs[0].dtype == "uint8" and inference.inputs[0].dtype == "float32"
    assert {id(w) for w in inference.weights} <= {id(w) for w in training.weights}
    raw = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    # at inference augmentation is off, so both see the same image
    np.testing.assert_allclose(training.predict(raw, verbose=0), inference.predict(raw / 255.0, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_interrupted_run_resumes_at_the_next_epoch_and_keeps_its_history(real_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        small_run(real_data_dir, out, callbacks=[InterruptAt(1)])
    assert not (out / "results.json").exists()
    first_epoch = (out / "history.csv").read_text().splitlines()
    assert len(first_epoch) == 2  # header + epoch 0

    best_before = (out / "best.weights.h5").stat().st_mtime_ns
    val_before = float(first_epoch[1].split(",")[first_epoch[0].split(",").index("val_accuracy")])
    seen = EpochsSeen()
    run = small_run(real_data_dir, out, callbacks=[seen])
    assert "resuming" in capsys.readouterr().out
    if run.history["val_accuracy"].iloc[1] <= val_before:  # the best model survives a worse epoch
        assert (out / "best.weights.h5").stat().st_mtime_ns == best_before
    assert seen.epochs == [1]  # epoch 0 was not trained again
    assert list(run.history["epoch"]) == [0, 1]
    assert (out / "history.csv").read_text().splitlines()[:2] == first_epoch
    assert not (out / "backup").exists() or not any((out / "backup").iterdir())

    record = json.loads((out / "results.json").read_text())
    assert RECORD_KEYS <= set(record)
    assert record["epochs_run"] == 2 and record["model"] == NET and record["image_size"] == 32
    assert record["model_options"] == NET_OPTIONS and record["params"] == NET_PARAMS
    assert 0 <= record["test_top1"] <= record["test_top5"] <= 1
    assert record["train_images_per_second"] > 0 and record["training_seconds"] > 0
    assert "labkit-stratified" in record["split_name"] and record["device"].startswith(("CPU", "GPU"))
    assert record["best_epoch"] in (1, 2)
    for name in ("best.keras", "model_summary.txt", "per_class.csv", "confusion_matrix.csv",
                 "learning_curves.png", "confusion_matrix.png"):
        assert (out / name).is_file(), name
    cm = np.loadtxt(out / "confusion_matrix.csv", delimiter=",")
    assert cm.shape == (17, 17) and cm.sum() == 340


def test_crash_after_training_does_not_lose_the_training(real_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash while evaluating")

    monkeypatch.setattr(evaluate, "evaluate_ten_crop", broken)
    with pytest.raises(RuntimeError, match="simulated crash"):
        small_run(real_data_dir, out)
    assert not (out / "results.json").exists() and any((out / "backup").iterdir())
    monkeypatch.undo()
    seen = EpochsSeen()
    run = small_run(real_data_dir, out, callbacks=[seen])
    assert seen.epochs == []  # both epochs were done: straight to evaluation
    assert run.results["epochs_run"] == 2 and (out / "results.json").is_file()
    assert not (out / "backup").exists()


def test_finished_run_is_returned_not_retrained(real_data_dir, tmp_path):
    out = tmp_path / "run"
    small_run(real_data_dir, out, epochs=1)
    seen = EpochsSeen()
    again = small_run(real_data_dir, out, epochs=1, callbacks=[seen])
    assert seen.epochs == [] and again.results["epochs_run"] == 1
    assert again.model is not None and again.evaluation.top1 == pytest.approx(again.results["test_top1"])
    with pytest.raises(ValueError, match="finished run with other settings"):
        small_run(real_data_dir, out, epochs=1, seed=5)


def test_weight_averaging_run_resumes_and_records_it(real_data_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        small_run(real_data_dir, out, optimizer="adamw", ema=True, callbacks=[InterruptAt(1)])
    seen = EpochsSeen()
    run = small_run(real_data_dir, out, optimizer="adamw", ema=True, callbacks=[seen])
    assert seen.epochs == [1] and run.results["config"]["ema"] is True
    assert 0 <= run.results["test_top1"] <= 1 and np.isfinite(run.history["val_loss"]).all()
    cfg = train.make_config("resnet18", "smoke", optimizer="adamw", ema=True)
    assert train.make_optimizer(cfg, steps_per_epoch=2).use_ema


def test_googlenet_with_auxiliary_heads_trains_and_evaluates(real_data_dir, tmp_path):
    run = train.train("googlenet", profile="smoke", image_size=32, batch_size=16, epochs=1, steps_per_epoch=1,
                      out_dir=tmp_path / "g", data_dir=real_data_dir, verbose=0,
                      model_options={"aux_classifiers": True})
    assert "predictions_loss" in run.history or "loss" in run.history
    assert len(run.model.outputs) == 1 and run.results["test_images"] == 340
    assert run.results["params"] > 6_000_000  # the record counts the aux heads it trained


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from labkit import train
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        cfg = train.make_config({NET!r}, "smoke", image_size=32, batch_size=8, model_options={NET_OPTIONS!r})
        with strategy.scope():
            model, inference, _, _ = train.build_training_model(cfg, np.full(3, 0.5), np.full(3, 0.1))
            train.compile_model(model, cfg, steps_per_epoch=2)
        x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
        y = np.arange(16) % 17
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        print("replicas", strategy.num_replicas_in_sync, "loss", history.history["loss"][0])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("replicas")][0]
    assert line.split()[1] == "2" and np.isfinite(float(line.split()[3]))


@pytest.mark.parametrize("argv,message", [
    (["train", "--model", "resnet20"], "Unknown model 'resnet20'"),
    (["train", "--model", "alexnet", "--image-size", "50"], "at least 67 pixels"),
    (["train", "--model", "vgg16", "--profile", "turbo"], "Unknown labkit profile 'turbo'"),
])
def test_cli_rejects_bad_arguments_before_any_work(argv, message, capsys, tmp_path):
    assert cli(argv + ["--out", str(tmp_path / "never")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_cli_trains_end_to_end_in_smoke(real_data_dir, tmp_path, capsys):
    out = tmp_path / "cli-run"
    assert cli(["train", "--model", NET, "--model-option", "depth=8", "--profile", "smoke", "--image-size", "32",
                "--out", str(out), "--data-dir", str(real_data_dir)]) == 0
    printed = capsys.readouterr().out
    assert "test top-1" in printed and str(out) in printed
    record = json.loads((out / "results.json").read_text())
    assert record["profile"] == "smoke" and record["image_size"] == 32 and record["epochs_run"] == 1
    assert record["model"] == NET and record["model_options"] == NET_OPTIONS


def test_cli_rejects_non_positive_epochs(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(["train", "--model", "resnet18", "--epochs", "-3"])
    assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_report_collects_records_and_skips_broken_ones(real_data_dir, tmp_path, capsys):
    small_run(real_data_dir, tmp_path / "runs" / "a", epochs=1)
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "results.json").write_text("{not json")
    table = report.collect([tmp_path / "runs"])
    assert len(table) == 1 and table["model"].iloc[0] == NET
    assert "skipping" in capsys.readouterr().out
    assert cli(["report", str(tmp_path / "runs")]) == 0
    assert NET in capsys.readouterr().out


def test_records_from_older_versions_still_match():
    cfg = train.make_config("resnet18", "cpu")
    stored = __import__("dataclasses").asdict(cfg)
    del stored["deterministic"]  # a record written before that field existed
    assert train.same_config(stored, cfg)
    stored["epochs"] += 1
    assert not train.same_config(stored, cfg)


def test_architecture_table_prefers_the_labs_own_run(tmp_path):
    def record(folder, size, top1, finished, start=None, model="resnet18", **config):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps({
            "model": model, "profile": "smoke", "image_size": size, "epochs_run": 2, "params": 1,
            "training_seconds": 10.0, "train_images_per_second": 5.0, "best_val_accuracy": top1,
            "test_top1": top1, "test_top5": 1.0, "split_name": "s", "finished": finished, "config": config,
            "start": start}))

    size = train.make_config("resnet18", "smoke").image_size      # the lab's size in this profile
    record("lab05", size, 0.7, "2026-01-01T10:00:00")
    record("lab06-experiment", size + 16, 0.5, "2026-01-01T11:00:00")  # newer, but another input size
    # newer and the same size, but fitted on train + val: not comparable with the other labs' runs
    record("final-fit", size, 0.9, "2026-01-01T12:00:00", train_split="trainval")
    # lab 08: another task (8 classes, 10 images each), transferred: not a resnet18 result on OxFlower17
    record("lab08-target", size, 0.6, "2026-01-01T13:00:00", start={"weights": "outputs/base"},
           classes=[1, 6, 8, 9, 12, 13, 14, 15], images_per_class=10)
    # the 17-class task from ImageNet weights: listed beside the from-scratch row
    record("imagenet", size, 0.95, "2026-01-01T14:00:00", start={"weights": "imagenet"}, model="resnet50",
           freeze_until="conv4")
    full = report.architecture_table("smoke", [tmp_path])
    table = full[full["start"] == "scratch"].set_index("model")
    assert table.loc["resnet18", "test_top1"] == 0.7 and table.loc["resnet18", "trained_at"] == size
    assert np.isnan(table.loc["vgg16", "test_top1"]) and table.loc["vgg16", "params"] > 0
    transferred = full[full["start"] != "scratch"]
    assert list(transferred["model"]) == ["resnet50"] and transferred["test_top1"].item() == 0.95
    assert transferred["start"].item() == "ImageNet, frozen to conv4"
    assert transferred["params"].item() == table.loc["resnet50", "params"]


def test_evaluation_metrics():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    ev = evaluate.Evaluation(labels=np.array([0, 1, 1, 1]), probabilities=probs, class_names=("a", "b", "c"))
    assert ev.top1 == 0.5 and ev.top_k(2) == 1.0
    assert ev.confusion_matrix().tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    per = ev.per_class().set_index("class_name")
    assert per.loc["b", "images"] == 3 and per.loc["b", "accuracy"] == pytest.approx(1 / 3)
    assert per.loc["c", "accuracy"] == 0  # no images: reported as 0, not NaN


def test_ten_crops_are_corners_centre_and_mirrors():
    images = np.arange(2 * 6 * 8 * 3, dtype=np.float32).reshape(2, 6, 8, 3)
    views = to_numpy(ten_crops(images, 4))
    assert views.shape == (10, 2, 4, 4, 3)
    np.testing.assert_array_equal(views[0], images[:, :4, :4])        # top-left
    np.testing.assert_array_equal(views[3], images[:, 2:, 4:])        # bottom-right
    np.testing.assert_array_equal(views[4], images[:, 1:5, 2:6])      # centre
    np.testing.assert_array_equal(views[5], views[0][:, :, ::-1])     # mirrored top-left
    with pytest.raises(ValueError, match="larger than the images"):
        ten_crops(images, 7)


def test_ten_crop_evaluation_runs_on_the_test_split(real_data_dir):
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(17, activation="softmax")])
    ev = evaluate.evaluate_ten_crop(model, data.CLASS_NAMES, "test", 32, data_dir=real_data_dir)
    assert ev.probabilities.shape == (340, 17) and len(ev.labels) == 340
    np.testing.assert_allclose(ev.probabilities.sum(axis=1), 1, rtol=1e-5)
    # a sample (the integrity check's): those images only, their views in one call, not one per batch
    recorder, sample = ShapeRecorder(model), np.array([3, 40, 41, 200, 339])
    part = evaluate.evaluate_ten_crop(recorder, data.CLASS_NAMES, "test", 32, data_dir=real_data_dir, images=sample)
    assert recorder.shapes == [(320, 32, 32, 3)] and list(part.labels) == list(ev.labels[sample])
    np.testing.assert_allclose(part.probabilities, ev.probabilities[sample], rtol=1e-5, atol=1e-6)


class ShapeRecorder:
    """A model for ``labkit.evaluate``'s predictions that records the batch shapes it is given."""

    def __init__(self, model):
        self.model, self.shapes = model, []

    def predict_on_batch(self, x):
        self.shapes.append(tuple(x.shape))
        return self.model.predict_on_batch(x)


def test_predictions_are_made_in_one_batch_shape_and_the_padding_is_dropped():
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Flatten(), keras.layers.Dense(17, activation="softmax")])
    images = np.random.default_rng(0).random((21, 8, 8, 3)).astype(np.float32)
    batches = [(images[i:i + 8], np.arange(i, min(i + 8, 21)) % 17) for i in range(0, 21, 8)]   # 8, 8 and 5 images
    recorder = ShapeRecorder(model)
    labels, probs = evaluate.predict(recorder, [(x[:, :6, :6], y) for x, y in batches])
    assert set(recorder.shapes) == {(8, 6, 6, 3)} and probs.shape == (21, 17) and list(labels) == list(np.arange(21) % 17)
    np.testing.assert_allclose(probs, to_numpy(model(images[:, :6, :6])), rtol=1e-5, atol=1e-6)

    recorder.shapes.clear()
    ten = evaluate.ten_crop_probabilities(recorder, images[:5], 6, batch_size=16)   # 50 views: 16, 16, 16 and 2
    assert set(recorder.shapes) == {(16, 6, 6, 3)} and len(recorder.shapes) == 4
    views = to_numpy(ten_crops(images[:5], 6)).reshape(50, 6, 6, 3)
    np.testing.assert_allclose(ten, to_numpy(model(views)).reshape(10, 5, 17).mean(axis=0), rtol=1e-5, atol=1e-6)


def test_the_train_step_is_traced_once():
    """The optimizer's slots exist before the first step: a TensorFlow function that creates
    variables while it is traced is traced a second time, which doubled a short run's training."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's tf.function")
    import tensorflow as tf

    cfg = train.make_config("resnet18", "smoke", image_size=32, batch_size=4, optimizer="adamw", ema=True)
    model, _, _, _ = train.build_training_model(cfg, np.full(3, 0.4), np.full(3, 0.05))
    train.compile_model(model, cfg, steps_per_epoch=2)
    created = []

    def creator(next_creator, **kwargs):
        if tf.inside_function():
            created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    with tf.variable_creator_scope(creator):
        model.fit(images, np.arange(8) % 17, batch_size=4, epochs=1, verbose=0)
    assert created == []


@pytest.mark.parametrize("mixing, policy", [("mixup", "float32"), ("cutmix", "mixed_bfloat16")])
def test_mixed_batches_keep_uint8_images_and_labels_that_sum_to_one(real_data_dir, mixing, policy):
    cfg = train.make_config("resnet18", "smoke", image_size=32, batch_size=16, mixing=mixing)
    keras.mixed_precision.set_global_policy(policy)  # the pipeline mixes in float32 under any policy
    try:
        train_ds, val_ds, _ = train.datasets(cfg, real_data_dir, outputs=1)
        images, labels = next(iter(train_ds))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    labels = np.asarray(labels)
    assert images.dtype == "uint8" and images.shape == (16, 32, 32, 3)
    assert labels.shape == (16, 17) and np.allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert (labels > 0).sum(axis=1).max() <= 2        # a mix of at most two images' classes
    assert ((labels > 0) & (labels < 1)).any()        # ... and some really are mixed
    _, val_labels = next(iter(val_ds))
    assert set(np.unique(np.asarray(val_labels))) <= {0.0, 1.0}  # validation images are never mixed


def test_cutmix_run_trains_and_records_it(real_data_dir, tmp_path):
    run = small_run(real_data_dir, tmp_path / "cutmix", optimizer="adamw", mixing="cutmix")
    assert run.results["config"]["mixing"] == "cutmix"
    assert np.isfinite(run.history["loss"]).all() and 0 <= run.results["test_top1"] <= 1
    assert train.run_name(train.make_config("resnet18", "smoke", image_size=32, mixing="cutmix")).endswith("_cutmix")
    with pytest.raises(ValueError, match="mixing must be one of none, mixup, cutmix"):
        train.make_config("resnet18", "smoke", mixing="cutout")


def test_trainval_run_fits_train_and_val_and_keeps_the_final_weights(real_data_dir, tmp_path):
    cfg = train.make_config("resnet18", "smoke", image_size=32, optimizer="adamw", train_split="trainval",
                            steps_per_epoch=None)
    train_ds, val_ds, _ = train.datasets(cfg, real_data_dir, outputs=1)
    assert val_ds is None
    assert sum(len(y) for _, y in train_ds) == 680 + 340     # one pass: training and validation images
    run = small_run(real_data_dir, tmp_path / "tv", optimizer="adamw", ema=True, train_split="trainval")
    r = run.results
    assert r["best_val_accuracy"] is None and r["best_epoch"] is None and r["epochs_run"] == 2
    assert r["config"]["train_split"] == "trainval" and 0 <= r["test_top1"] <= 1
    assert "val_accuracy" not in run.history and not (tmp_path / "tv" / "best.weights.h5").exists()
    assert train.run_name(cfg).endswith("_adamw_trainval")
    table = report.format_report(report.collect([tmp_path / "tv"]))
    assert table["best val"].iloc[0] == ""                   # the report leaves it blank


def test_trainval_needs_a_schedule_without_validation(capsys, tmp_path):
    with pytest.raises(ValueError, match="optimizer 'adamw'"):
        train.make_config("resnet18", "smoke", optimizer="sgd", train_split="trainval")
    assert cli(["train", "--model", "alexnet", "--train-split", "trainval", "--optimizer", "sgd",
                "--out", str(tmp_path / "never")]) == 2
    assert "adamw" in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_gpu_profile_training_model_compiles_with_xla_and_no_fallback(recwarn):
    """The gpu profile asks for XLA: augmentation (RandomAffine etc.) and LRN must not switch it
    off (Keras warns and falls back when a layer has supports_jit=False), and the step must run."""
    cfg = train.make_config("alexnet", "gpu", image_size=67, batch_size=4, augmentation="strong")
    assert cfg.jit_compile
    model, _, _, _ = train.build_training_model(cfg, np.full(3, 0.5), np.full(3, 0.1))
    train.compile_model(model, cfg, steps_per_epoch=1)
    assert model.jit_compile is True
    x = np.random.default_rng(0).integers(0, 256, (4, 67, 67, 3), dtype=np.uint8)
    assert np.isfinite(model.train_on_batch(x, np.arange(4))[0])
    assert not [w for w in recwarn if "jit_compile" in str(w.message)]


# --------------------------------------------------------------------------- time budgets

class StandInClock:
    """A clock that only moves when a stand-in training step says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_step_timing_skips_the_compiling_warm_up_steps():
    clock, costs = StandInClock(), iter([30.0, 1.0] + [0.5] * 4)   # the first call compiles

    def step():
        clock.now += next(costs)

    assert train.budget.seconds_per_step(step, steps=4, warmup=2, clock=clock) == pytest.approx(0.5)


def test_training_step_timing_inside_fit_skips_the_compiling_warm_up_steps():
    ends = iter(np.cumsum([30.0, 1.0] + [0.5] * 4))   # the clock at each step's end; the first compiles
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    batches = data.first_batch_repeated(data.array_batches(np.ones((4, 3), np.uint8), np.zeros((4, 2), np.float32),
                                                           4, dtype="uint8"))
    seconds = train.budget.seconds_per_training_step(model, batches, steps=4, warmup=2, clock=lambda: next(ends))
    assert seconds == pytest.approx(0.5)


@pytest.mark.parametrize("seconds_per_step, expected", [(30.0, 1), (8.0, 2), (2.0, 13), (0.5, 30)])
def test_a_slower_machine_gets_fewer_epochs_a_faster_one_more_up_to_the_recipe(seconds_per_step, expected):
    batch = 32
    train_rate, inference_rate = batch / seconds_per_step, 3 * batch / seconds_per_step
    epochs, per_epoch = train.choose_epochs(15, 60, train_rate, inference_rate, 680, 340, 340, recipe_epochs=30,
                                            checkpoint_seconds=1.0)
    assert epochs == expected
    assert per_epoch == pytest.approx(680 / train_rate + 340 / inference_rate + 2 * 1.0)
    if 1 < epochs < 30:  # the chosen epochs fit the planned share of 15 minutes, one more would not
        final = train.budget.FINAL_EVALUATION_PASSES * 340 / inference_rate + train.budget.FINISHING_SECONDS
        planned = train.budget.SAFETY * 15 * 60
        assert 60 + epochs * per_epoch + final <= planned < 60 + (epochs + 1) * per_epoch + final


def stand_in_clock(monkeypatch, seconds: dict) -> list:
    """The budget's timings come from ``seconds`` (``train``, ``inference``: per step); the steps
    still run, so the model is changed as a real measurement changes it. Returns the timed models."""
    timed = []
    real_training, real_step = train.budget.seconds_per_training_step, train.budget.seconds_per_step

    def training(model, batches, **kw):
        timed.append(model)
        real_training(model, batches, **kw)
        return seconds["train"]

    monkeypatch.setattr(train.budget, "seconds_per_training_step", training)
    monkeypatch.setattr(train.budget, "seconds_per_step", lambda step, **kw: (real_step(step), seconds["inference"])[1])
    return timed


def test_budgeted_run_chooses_its_epochs_records_them_and_keeps_them_on_resume(real_data_dir, tmp_path, monkeypatch,
                                                                               capsys):
    import dataclasses

    from labkit.profiles import get_profile

    # the stand-in machine below: 23 s an epoch, 33 s of final evaluation, so 1.8 minutes hold 2 epochs
    profile = dataclasses.replace(get_profile("smoke"), epochs=6, steps_per_epoch=None, budget_minutes=1.8)
    stand_in = {"train": 0.5, "inference": 0.1}      # a slow machine: 32 img/s training at batch 16
    stand_in_clock(monkeypatch, stand_in)
    out = tmp_path / "budget-run"
    settings = dict(profile=profile, image_size=32, batch_size=16, out_dir=out, data_dir=real_data_dir,
                    verbose=0, augmentation="none", optimizer="adamw", warmup_epochs=0)
    with pytest.raises(KeyboardInterrupt):
        train_net(callbacks=[InterruptAt(1)], **settings)
    plan = json.loads((out / "budget.json").read_text())
    assert plan["recipe_epochs"] == 6 and plan["epochs"] == 2 and plan["train_images_per_second"] == 32
    stand_in.update(train=0.001, inference=0.001)    # a resumed run keeps its plan, it does not re-measure
    seen = EpochsSeen()
    run = train_net(callbacks=[seen], **settings)
    assert run.results["budget"]["epochs"] == plan["epochs"] == run.results["epochs_run"]
    assert seen.epochs == list(range(1, plan["epochs"]))
    schedule = run.results["recipe"]["optimizer"]["config"]["learning_rate"]["config"]   # for the 2 epochs
    assert schedule["decay_steps"] == plan["epochs"] * run.results["steps_per_epoch"]
    assert run.results["config"]["epochs"] == 6 and run.results["config"]["budget_minutes"] == 1.8
    assert "shorter than the full recipe" in capsys.readouterr().out
    assert not (out / "budget.json").exists()      # the record holds it now
    explicit = train.make_config("resnet18", profile, epochs=4)
    assert explicit.budget_minutes is None and explicit.epochs == 4   # --epochs wins over the budget


def test_a_budget_that_keeps_the_recipe_trains_exactly_as_a_run_without_one(real_data_dir, tmp_path, monkeypatch):
    """The budget measures the run's own compiled model (no second compile) and puts back every
    weight, moving statistic, augmentation seed and optimizer variable that measuring changed."""
    import dataclasses

    from labkit.profiles import get_profile

    if keras.backend.backend() != "tensorflow":
        # Keras' JAX and PyTorch trainers build their metrics in a run's first fit from a batch of a
        # fresh iterator: with tf.data (a new shuffling order per iterator) a run without the
        # probe's fit before it starts one order later. The NumPy pipeline's orders go by epoch.
        monkeypatch.setattr(data.pipeline, "default_pipeline", lambda: "numpy")
    compiled = []
    real_compile = train.engine.compile_model
    monkeypatch.setattr(train.engine, "compile_model", lambda model, *a, **kw: (compiled.append(model),
                                                                                real_compile(model, *a, **kw))[1])
    timed = stand_in_clock(monkeypatch, {"train": 0.001, "inference": 0.001})   # a fast machine: all epochs fit
    # AdamW with a weight average (optimizer state beyond the weights), augmentation (random state)
    settings = dict(image_size=32, batch_size=16, data_dir=real_data_dir, verbose=0, augmentation="light",
                    optimizer="adamw", ema=True, classes=[0, 1, 2], images_per_class=16, seed=3)
    budgeted = train_net(profile=dataclasses.replace(
        get_profile("smoke"), epochs=2, steps_per_epoch=None, budget_minutes=30), out_dir=tmp_path / "b", **settings)
    assert budgeted.results["budget"]["epochs"] == 2 and not budgeted.results["budget"]["train_images_per_second"] < 16e3
    assert len(compiled) == 1 and timed == compiled     # the probe timed the model that trained, compiled once
    plain = train_net(profile="smoke", epochs=2, steps_per_epoch=None, out_dir=tmp_path / "p", **settings)
    assert plain.results["budget"] is None
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_array_equal(budgeted.history[key], plain.history[key], err_msg=key)
    np.testing.assert_array_equal(budgeted.evaluation.probabilities, plain.evaluation.probabilities)


def test_running_out_of_gpu_memory_says_what_to_lower_and_keeps_the_backup(real_data_dir, tmp_path):
    tf = pytest.importorskip("tensorflow")

    class OutOfMemoryAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    out = tmp_path / "oom-run"
    with pytest.raises(train.OutOfMemoryError) as caught:
        small_run(real_data_dir, out, batch_size=16, callbacks=[OutOfMemoryAt()])
    message = str(caught.value)
    assert "batch size 16" in message and "32 px" in message and "--batch-size 8" in message
    assert any((out / "backup").iterdir()) and (out / "history.csv").is_file()   # epoch 1 is kept
    seen = EpochsSeen()
    small_run(real_data_dir, out, batch_size=16, callbacks=[seen])
    assert seen.epochs == [1]


def _split_arrays(real_data_dir, size=32, split="train"):
    index = data.oxflower17_index(real_data_dir)
    rows = index[index["split"] == split]
    images = data.decoded_images(size, real_data_dir)[rows["image_id"].to_numpy() - 1]
    return images, rows["label"].to_numpy()


def test_training_batches_come_from_the_images_given(real_data_dir):
    images, labels = _split_arrays(real_data_dir)
    mine = (images[:40][:, ::-1], labels[:40])  # mirrored: images the split does not hold
    cfg = train.make_config("resnet18", "smoke", image_size=32, batch_size=16, steps_per_epoch=None)
    arrays = train.training_arrays(mine, 32, 17)[:2]
    batches, val, _ = train.datasets(cfg, real_data_dir, outputs=1, train_arrays=arrays)
    seen = np.concatenate([np.asarray(x) for x, _ in batches])
    seen_labels = np.concatenate([np.asarray(y) for _, y in batches])
    assert seen.dtype == np.uint8 and len(seen) == 40
    order = np.lexsort(seen.reshape(40, -1).T)
    expected = np.lexsort(mine[0].reshape(40, -1).T)
    assert np.array_equal(seen[order], mine[0][expected]) and np.array_equal(seen_labels[order], mine[1][expected])
    assert sum(len(np.asarray(y)) for _, y in val) == 340  # validation stays OxFlower17's


def test_a_run_on_an_enlarged_training_set_records_it_and_never_mixes_it_up(real_data_dir, tmp_path):
    from labkit.augment import enlarge

    images, labels = _split_arrays(real_data_dir, size=40)
    enlarged = enlarge(images[:64], labels[:64], copies=1, crop_size=32, seed=0)
    outputs = tmp_path / "outputs"
    settings = dict(profile="smoke", image_size=32, batch_size=16, epochs=1, steps_per_epoch=3,
                    data_dir=real_data_dir, verbose=0, augmentation="none")
    run = train_net(train_data=enlarged, out_dir=outputs / "a", **settings)
    assert run.results["train_data"]["images"] == 128 and run.results["steps_per_epoch"] == run.steps_per_epoch == 3
    tag = run.results["config"]["train_data"]
    assert tag.startswith("own-")
    cfg = train.make_config("resnet18", "smoke", image_size=32, batch_size=16, epochs=1, train_data=tag)
    assert tag.removeprefix("own-") in train.run_name(cfg)
    seen = EpochsSeen()
    again = train_net(train_data=enlarged, out_dir=outputs / "a", callbacks=[seen], **settings)
    assert seen.epochs == [] and again.results["test_top1"] == run.results["test_top1"]
    other = enlarge(images[:64], labels[:64], copies=1, crop_size=32, seed=1)
    with pytest.raises(ValueError):  # other images are another run: never returned as this one
        train_net(train_data=other, out_dir=outputs / "a", **settings)
    plain = train.make_config("resnet18", "smoke", image_size=32, batch_size=16, epochs=1)
    assert train.run_name(plain) != train.run_name(cfg)


@pytest.mark.parametrize("bad", [
    "no pair",
    "wrong size",
    "labels out of range",
    "float out of range",
    "one label short",
])
def test_bad_training_data_is_refused_before_any_work(bad, real_data_dir, tmp_path):
    images, labels = _split_arrays(real_data_dir)
    images, labels = images[:20], labels[:20]
    given = {
        "no pair": images,
        "wrong size": (images[:, :16], labels),
        "labels out of range": (images, labels + 17),
        "float out of range": (images.astype("float32"), labels),
        "one label short": (images, labels[:-1]),
    }[bad]
    seen = EpochsSeen()
    with pytest.raises(ValueError):
        train.train("resnet18", profile="smoke", image_size=32, epochs=1, train_data=given, data_dir=real_data_dir,
                    out_dir=tmp_path / "r", callbacks=[seen], verbose=0)
    assert seen.epochs == [] and not (tmp_path / "r").exists()


def test_training_data_given_as_floats_in_zero_one_is_the_same_data():
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(4)
    as_uint8 = train.training_arrays((images, labels), 8, 17)
    as_float = train.training_arrays((images / 255.0, labels), 8, 17)
    assert np.array_equal(as_uint8[0], as_float[0]) and as_uint8[2] == as_float[2]
    with pytest.raises(ValueError):
        train.make_config("resnet18", "smoke", train_data="own-1234", train_split="trainval", optimizer="adamw")


def test_steps_per_epoch_of_a_record_written_before_it_was_recorded(real_data_dir, monkeypatch):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(real_data_dir))
    record = {"partition": 1, "batch_size": 16, "jit_compile": False, "config": {"train_split": "train"}}
    assert train.Run("x", record, None).steps_per_epoch == 43  # 680 images, the last batch of 8 counts
    assert train.Run("x", {**record, "jit_compile": True}, None).steps_per_epoch == 42  # compiled: dropped
    five = {**record, "config": {"train_split": "train", "images_per_class": 5}}
    assert train.Run("x", five, None).steps_per_epoch == 6  # 85 images


def test_a_run_on_training_data_of_its_own_is_not_a_labs_comparison_run():
    assert report.is_from_scratch({"config": {"train_split": "train"}, "start": None})
    assert not report.is_from_scratch({"config": {"train_data": "own-0123456789"}, "start": None})
    assert not report.is_from_scratch({"config": {"images_per_class": 5}, "start": None})


def test_two_processes_asking_for_one_run_train_it_once(real_data_dir, tmp_path):
    """Two notebooks (or two test workers) train the same run: the second waits for the first
    and reads its record back, instead of both writing one folder."""
    out = tmp_path / "shared-run"
    script = textwrap.dedent(f"""
        from labkit import train
        run = train.train({NET!r}, model_options={NET_OPTIONS!r}, profile="smoke", image_size=32, batch_size=16,
                          epochs=2, steps_per_epoch=2, out_dir={str(out)!r}, data_dir={str(real_data_dir)!r},
                          verbose=0, augmentation="none")
        print("epochs", len(run.history))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    printed = [stdout for stdout, _ in outputs]
    assert all("epochs 2" in text for text in printed)
    assert sum("read back" in text for text in printed) == 1                # one trained, one read it back
    assert len((out / "history.csv").read_text().splitlines()) == 3         # header + two epochs, once


def test_a_run_read_back_shows_its_kept_predictions_without_evaluating_again(real_data_dir, tmp_path, monkeypatch):
    """A finished run keeps its test predictions (single view and 10-crop): reading it back, as
    every lab and grading do, shows them instead of evaluating the model again."""
    from labkit import evaluate

    trained = small_run(real_data_dir, tmp_path / "run")
    assert (tmp_path / "run" / train.PREDICTIONS).is_file()
    assert trained.ten_crop.top1 == trained.results["test_top1_10crop"]
    assert trained.results["test_seconds_10crop"] > 0 and trained.results["test_seconds"] > 0

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(evaluate, "evaluate", refuse)
    monkeypatch.setattr(evaluate, "evaluate_ten_crop", refuse)
    back = train.load_run(tmp_path / "run", data_dir=real_data_dir)
    np.testing.assert_array_equal(back.evaluation.probabilities, trained.evaluation.probabilities)
    np.testing.assert_array_equal(back.ten_crop.probabilities, trained.ten_crop.probabilities)
    assert back.evaluation.top1 == trained.results["test_top1"]


def test_a_run_without_kept_predictions_is_evaluated_once_and_keeps_them(real_data_dir, tmp_path, monkeypatch):
    """A run from before predictions were kept, or whose file does not match its record (stale,
    damaged), is evaluated on reading back, and the predictions are kept for the next time."""
    from labkit import evaluate

    out = tmp_path / "run"
    trained = small_run(real_data_dir, out)
    calls = []
    for name in ("evaluate", "evaluate_ten_crop"):
        original = getattr(evaluate, name)
        monkeypatch.setattr(evaluate, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    for damage in (lambda p: p.unlink(),   # missing (a damaged file reads as missing)
                   lambda p: np.savez(p.open("wb"), labels=trained.evaluation.labels,   # a perfect score typed in
                                      probabilities=np.eye(17, dtype=np.float32)[trained.evaluation.labels])):
        damage(out / train.PREDICTIONS)
        calls.clear()
        back = train.load_run(out, data_dir=real_data_dir)
        assert back.ten_crop.top1 == pytest.approx(trained.results["test_top1_10crop"], abs=1e-6)
        assert calls == ["evaluate", "evaluate_ten_crop"]
        assert back.evaluation.top1 == pytest.approx(trained.results["test_top1"], abs=1e-6)
        calls.clear()
        again = train.load_run(out, data_dir=real_data_dir)
        again.ten_crop
        assert calls == []                       # kept by the first read-back


def test_kept_predictions_are_not_shown_for_another_split(real_data_dir, tmp_path, monkeypatch):
    """A run tested on another split than the one here (the official split added since) is
    evaluated on this one, and its kept predictions stay as they were."""
    from labkit import evaluate

    out = tmp_path / "run"
    small_run(real_data_dir, out)
    record = json.loads((out / "results.json").read_text())
    record["split_name"] = "oxford-official partition 1"
    (out / "results.json").write_text(json.dumps(record))
    kept = (out / train.PREDICTIONS).read_bytes()
    calls = []
    original = evaluate.evaluate
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: calls.append(1) or original(*a, **k))
    back = train.load_run(out, data_dir=real_data_dir)
    assert calls == [1] and len(back.evaluation.labels) == 340
    assert (out / train.PREDICTIONS).read_bytes() == kept


def test_the_labs_comparison_takes_the_students_own_run_of_the_labs_seed(tmp_path):
    """Lab 07 compares the runs of labs 02-05: the student's network over labkit's reference, and
    the lab's own seed over a repeat with another seed, even when those are newer."""
    def record(folder, model, finished, own, seed=0, **options):
        (tmp_path / folder).mkdir()
        size = train.make_config(model, "smoke").image_size
        (tmp_path / folder / "results.json").write_text(json.dumps({
            "model": model, "model_options": options, "profile": "smoke", "image_size": size, "epochs_run": 2,
            "params": 1, "training_seconds": 10.0, "train_images_per_second": 5.0, "best_val_accuracy": 0.5,
            "test_top1": 0.5, "test_top5": 1.0, "split_name": "s", "finished": finished, "seed": seed,
            "network": {"source": "own" if own else "labkit"}, "config": {"seed": seed}}))

    for model, options in report.LAB_RUNS:
        record(f"{model}-own", model, "2026-01-01T10:00:00", True, **options)
        record(f"{model}-labkit-newer", model, "2026-01-01T11:00:00", False, **options)
        record(f"{model}-own-seed1-newest", model, "2026-01-01T12:00:00", True, seed=1, **options)
    found = report.lab_runs("smoke", [tmp_path], log=lambda *_: None)
    assert {model: path.name for model, path in found.items()} == {m: f"{m}-own" for m, _ in report.LAB_RUNS}
