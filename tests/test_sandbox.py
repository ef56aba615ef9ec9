"""labkit.sandbox: a confined process may write only inside its folder and may not start programs."""
import subprocess
import sys
import textwrap


def _confined(tmp_path, body: str) -> tuple[subprocess.CompletedProcess, str]:
    box = tmp_path / "box"
    box.mkdir()
    log = tmp_path / "guard.log"
    script = textwrap.dedent(f"""
        import os, shutil, subprocess, sys
        import labkit.sandbox
        labkit.sandbox.confine({str(box)!r}, {str(log)!r})
        os.chdir({str(box)!r})
        def attempt(label, action):
            try:
                action()
                print(label, "allowed")
            except PermissionError:
                print(label, "refused")
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    return done, log.read_text() if log.exists() else ""


def test_writes_inside_are_allowed_and_escapes_refused_and_logged(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    done, log = _confined(tmp_path, f"""
        attempt("inside", lambda: open("results.txt", "w").write("ok"))
        attempt("inside-dir", lambda: os.makedirs("outputs/run", exist_ok=True))
        attempt("read-outside", lambda: open({str(outside)!r}).read())
        attempt("write-outside", lambda: open({str(outside)!r}, "w"))
        attempt("append-relative", lambda: open("../outside.txt", "a"))
        attempt("os-open", lambda: os.open({str(outside)!r}, os.O_WRONLY))
        attempt("remove", lambda: os.remove({str(outside)!r}))
        attempt("rename-out", lambda: os.rename("results.txt", {str(tmp_path / "moved.txt")!r}))
        attempt("rmtree", lambda: shutil.rmtree({str(tmp_path)!r}))
        attempt("program", lambda: subprocess.run(["ls"]))
        attempt("system", lambda: os.system("touch {tmp_path / 'x'}"))
        attempt("devnull", lambda: open(os.devnull, "w").write("x"))
    """)
    assert done.returncode == 0, done.stderr
    result = dict(line.split() for line in done.stdout.splitlines())
    assert result == {"inside": "allowed", "inside-dir": "allowed", "read-outside": "allowed",
                      "write-outside": "refused", "append-relative": "refused", "os-open": "refused",
                      "remove": "refused", "rename-out": "refused", "rmtree": "refused",
                      "program": "refused", "system": "refused", "devnull": "allowed"}
    assert outside.read_text() == "keep me" and (tmp_path / "box" / "results.txt").read_text() == "ok"
    assert not (tmp_path / "moved.txt").exists() and not (tmp_path / "x").exists()
    assert f"write outside the submission folder: {outside}" in log
    assert "started a program: 'ls'" in log and "os.system" in log
    assert len(log.splitlines()) == 8  # one line per refusal


# ---------------------------------------------------------------- the OS sandbox (labkit.grading.box)
def _boxed(tmp_path, script: str, secret=()):
    from labkit.grading import box as sandbox

    inside = tmp_path / "box"
    inside.mkdir(exist_ok=True)
    command = sandbox.command(inside, [], [sys.executable, "-c", textwrap.dedent(script)], list(secret))
    if command is None:
        import pytest

        pytest.skip(f"no OS sandbox here: {sandbox.why_not()}")
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=inside)


def test_the_box_shows_only_python_labkit_and_its_folder(tmp_path):
    secret = tmp_path / "autograder"
    secret.mkdir()
    (secret / "solution.ipynb").write_text("the answers")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    done = _boxed(tmp_path, f"""
        import os, socket, sys, labkit, numpy
        print("secret", os.path.exists({str(secret)!r}))
        print("repo", os.path.exists({str(__import__('pathlib').Path(__file__).resolve().parents[1] / 'notebooks')!r}))
        open("mine.txt", "w").write("ok")
        open({str(outside)!r}, "w").write("changed")   # lands in the box's private /tmp, not here
        try:
            open(os.path.join(sys.prefix, "changed.txt"), "w").write("changed")
            print("python written")
        except OSError:
            print("python refused")
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=3)
            print("network reached")
        except OSError:
            print("network refused")
        print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:3])
    """, secret=[secret])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "secret False" in lines and "repo False" in lines, lines
    assert "python refused" in lines and "network refused" in lines, lines
    assert outside.read_text() == "keep me" and (tmp_path / "box" / "mine.txt").read_text() == "ok"
    assert lines[-1].startswith("pids [1, 2"), lines[-1]   # its own process namespace


def test_the_box_refuses_to_mount_a_folder_that_would_show_a_secret(tmp_path):
    import sys as system

    from labkit.grading import box as sandbox

    if sandbox.command(tmp_path, [], ["true"], []) is None:
        import pytest

        pytest.skip(f"no OS sandbox here: {sandbox.why_not()}")
    assert sandbox.command(tmp_path, [], ["true"], [__import__("pathlib").Path(system.prefix) / "secret"]) is None


def test_grading_without_the_sandbox_warns_or_refuses(tmp_path, monkeypatch):
    import pytest

    from labkit import grading
    from labkit.grading import box as sandbox

    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    assert sandbox.command(tmp_path, [], ["true"], []) is None and "not installed" in sandbox.why_not()
    (tmp_path / "subs").mkdir()
    with pytest.raises(grading.GradingError, match="sandbox cannot start"):
        grading.grade(tmp_path / "subs", tmp_path / "g.csv", require_sandbox=True, log=lambda *_: None)
    lines = []
    (tmp_path / "none").mkdir()
    with pytest.raises(grading.GradingError, match="holds no lab autograder"):
        grading.grade(tmp_path / "subs", tmp_path / "g.csv", autograder=tmp_path / "none", log=lines.append)
    assert any("NO SANDBOX" in line for line in lines)
    assert not (tmp_path / "g.csv").exists()
