"""Where runs and caches live, and Colab runs that survive a disconnect (Drive stood in by a folder)."""
import sys
import types
import warnings

import pytest

from labkit import colab, places, report, train
from test_train import NET, NET_OPTIONS, EpochsSeen, InterruptAt, train_net


@pytest.fixture
def clean_places(monkeypatch):
    for var in (places.OUTPUTS_VAR, places.CACHE_VAR):
        monkeypatch.setenv(var, "")          # restored after the test, whatever keep_in sets
    monkeypatch.setattr(colab, "_warned", False)


def fake_colab(monkeypatch, mount):
    """``google.colab.drive`` as Colab has it, with ``mount`` standing in for Drive."""
    google, package, drive = (types.ModuleType(n) for n in ("google", "google.colab", "google.colab.drive"))
    drive.mount = mount
    package.drive, google.colab = drive, package
    for name, module in (("google", google), ("google.colab", package), ("google.colab.drive", drive)):
        monkeypatch.setitem(sys.modules, name, module)


def test_outputs_do_not_follow_the_data_directory(clean_places, monkeypatch, tmp_path):
    monkeypatch.setenv(places.DATA_VAR, str(tmp_path / "elsewhere"))
    assert places.data_dir() == tmp_path / "elsewhere"
    assert places.outputs_dir() == places.checkout() / "outputs"
    assert places.cache_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere" / "cache"
    monkeypatch.setenv(places.OUTPUTS_VAR, str(tmp_path / "runs"))
    monkeypatch.setenv(places.CACHE_VAR, str(tmp_path / "decoded"))
    assert places.outputs_dir() == tmp_path / "runs" and report.default_outputs_dir() == tmp_path / "runs"
    assert places.cache_dir(tmp_path / "elsewhere") == tmp_path / "decoded"


def test_off_colab_keep_on_drive_changes_nothing(clean_places, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert colab.keep_on_drive() is None
    assert places.outputs_dir() == places.checkout() / "outputs"


def test_without_drive_it_warns_once_and_keeps_the_runtime_disk(clean_places, monkeypatch):
    def refuse(mount_point):
        raise ValueError("mount failed")   # what Colab raises when the student refuses access

    fake_colab(monkeypatch, refuse)
    with pytest.warns(UserWarning) as caught:
        assert colab.keep_on_drive() is None
        assert colab.keep_on_drive() is None   # the setup cell run again: no second warning
    assert len(caught) == 1
    assert places.outputs_dir() == places.checkout() / "outputs"


def test_with_drive_a_disconnect_resumes_and_other_notebooks_find_the_runs(clean_places, monkeypatch, tmp_path,
                                                                           real_data_dir, capsys):
    drive = tmp_path / "drive"

    def mount(mount_point):
        (drive / "MyDrive").mkdir(parents=True, exist_ok=True)

    fake_colab(monkeypatch, mount)
    settings = dict(profile="smoke", image_size=32, batch_size=16, epochs=2, steps_per_epoch=2,
                    data_dir=real_data_dir, verbose=0, augmentation="none", seed=3)
    # runtime 1: Drive allowed, the run is cut off by a disconnect during its second epoch
    root = colab.keep_on_drive(mount_point=str(drive))
    assert root == drive / "MyDrive" / "labkit"
    with pytest.raises(KeyboardInterrupt):
        train_net(callbacks=[InterruptAt(1)], **settings)
    run_dir = root / "outputs" / train.run_name(train.make_config(NET, "smoke", model_options=NET_OPTIONS, **{
        k: v for k, v in settings.items() if k not in ("profile", "data_dir", "verbose")}))
    assert (run_dir / "backup").is_dir() and not (run_dir / "results.json").exists()
    assert list((root / "cache").glob("oxflower17-32px-*.npy"))   # the decoded images, on Drive too

    # runtime 2: a fresh process has lost its environment; the setup cell runs again
    monkeypatch.setenv(places.OUTPUTS_VAR, "")
    monkeypatch.setenv(places.CACHE_VAR, "")
    assert colab.keep_on_drive(mount_point=str(drive)) == root
    seen = EpochsSeen()
    run = train_net(callbacks=[seen], **settings)
    assert seen.epochs == [1] and run.out_dir == run_dir       # resumed at the lost epoch
    assert "resuming" in capsys.readouterr().out
    # lab 07, in yet another runtime, finds the run through the default outputs folder
    table = report.collect()
    assert list(table["run"].map(lambda p: str(p))) == [str(run_dir)]
