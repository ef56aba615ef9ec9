"""``labkit report`` in a terminal: short, filtered, ordered."""
import json

import pytest

from labkit import report
from labkit.__main__ import main as cli

SPLIT = "labkit-stratified (40/20/20 per class, numpy default_rng(partition)) partition 1"


def record(model, profile, finished, size=128, **extra):
    return {"model": model, "profile": profile, "image_size": size, "epochs_run": 3, "params": 11_200_000,
            "train_images_per_second": 50.0, "training_seconds": 60.0, "best_val_accuracy": 0.5,
            "test_top1": 0.5, "test_top5": 0.9, "split_name": SPLIT, "finished": finished,
            "config": {"train_split": "train"}, **extra}


@pytest.fixture
def runs(tmp_path):
    long = "resnet18_cpu_64px_classes-1-6-8-9-12-13-14-15_10per-class_from-resnet18_cpu_64px_trainval-to-conv4"
    for name, rec in [("resnet18_smoke_32px", record("resnet18", "smoke", "2026-11-03")),
                      ("vgg11_cpu_64px", record("vgg11", "cpu", "2026-11-02", size=64)),
                      ("alexnet_cpu_128px", record("alexnet", "cpu", "2026-11-04")),
                      ("resnet18_gpu_224px", record("resnet18", "gpu", "2026-11-01", size=224)),
                      (long, record("resnet18", "cpu", "2026-11-05", size=64, start={"weights": "x"},
                                    config={"transfer_layers": "conv4"}))]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(rec))
    return tmp_path


def test_report_orders_filters_and_fits_a_terminal(runs, capsys):
    assert cli(["report", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 150                          # was about 250 columns
    models = [line.split()[0] for line in lines[1:-1]]
    assert models == ["resnet18", "alexnet", "resnet18", "vgg11"]   # gpu first, then cpu by model
    assert "resnet18_smoke_32px" not in "\n".join(lines)          # smoke runs hidden by default ...
    assert "1 smoke-profile" in lines[-1] and "labkit-1" in lines[-1]   # ... and said so; the shared split
    assert str(runs) not in "\n".join(lines) and "alexnet_cpu_128px" in "\n".join(lines)   # relative paths
    assert cli(["report", str(runs), "--profile", "smoke"]) == 0
    assert "resnet18_smoke_32px" in capsys.readouterr().out
    assert cli(["report", str(runs), "--model", "vgg11", "alexnet", "--profile", "cpu"]) == 0
    shown = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert shown == ["alexnet", "vgg11"]
    assert cli(["report", str(runs), "--model", "densenet121"]) == 1


def test_short_split_names():
    assert report.short_split(SPLIT) == "labkit-1"
    assert report.short_split("official datasplits.mat partition 3") == "official-3"


def test_the_architecture_table_counts_what_the_built_networks_have(tmp_path):
    """The table builds each network from shapes alone (no weights drawn): its counts must be
    those of the network built for real."""
    from labkit import inspect, models

    table = report.architecture_table("smoke", [tmp_path]).set_index("model")   # no runs: the labs' networks
    for name in ("vgg11", "googlenet", "resnet50"):
        size = int(table.loc[name, "input"])
        real = inspect.summarize(models.build(name, num_classes=17, input_shape=(size, size, 3)))
        assert table.loc[name, "params"] == real["params"] and table.loc[name, "gmacs"] == real["macs"] / 1e9
