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
