"""`tigerdecode demo`: loads the model once, binds 127.0.0.1 unless told, bounded queue."""

from click.testing import CliRunner

from tigerdecode.cli import main


def test_demo_command_wiring(monkeypatch, tiny_model_dir, tmp_path):
    import tigerdecode.demos.app as app_mod

    seen = []

    def fake_launch(app, **kw):  # record instead of serving forever
        seen.append((app, kw))

    monkeypatch.setattr(app_mod, "launch", fake_launch)
    results = tmp_path / "r.json"
    run = CliRunner().invoke(main, ["demo", "--model", str(tiny_model_dir), "--results",
                                    str(results)])
    assert run.exit_code == 0, run.output
    (app, kw), = seen
    assert kw["host"] == "127.0.0.1" and kw["concurrency"] == 1 and kw["block"] is True
    assert "warning" not in run.output

    run = CliRunner().invoke(main, ["demo", "--model", str(tiny_model_dir), "--host", "0.0.0.0",
                                    "--port", "7999", "--concurrency", "2"])
    assert run.exit_code == 0, run.output
    assert seen[-1][1]["host"] == "0.0.0.0" and seen[-1][1]["port"] == 7999
    assert "anyone who can reach it" in run.output


def test_demo_command_bad_input(tmp_path):
    run = CliRunner().invoke(main, ["demo", "--model", str(tmp_path / "nope")])
    assert run.exit_code != 0 and "Traceback" not in run.output
    run = CliRunner().invoke(main, ["demo", "--port", "0"])
    assert run.exit_code == 2 and "--port" in run.output


def test_queue_is_bounded(demo_backend):
    from tigerdecode.demos.app import build_app, launch

    app = build_app(demo_backend)
    launch(app, block=False, concurrency=1, max_queue=3)
    try:
        assert app._queue.max_size == 3
        assert app._queue.default_concurrency_limit == 1  # every queued event: one at a time
    finally:
        app.close()


def test_demo_screenshot_command(monkeypatch, tiny_model_dir, tmp_path):
    import tigerdecode.demos.app as app_mod
    import tigerdecode.demos.screenshot as shot

    launched, taken = [], []
    monkeypatch.setattr(app_mod, "launch", lambda app, **kw: launched.append(kw))
    monkeypatch.setattr(shot, "chromium", lambda: "/usr/bin/chromium")

    def fake_screenshot(model, tok, out, **kw):
        taken.append((out, kw))
        return out

    monkeypatch.setattr(shot, "screenshot", fake_screenshot)
    out = tmp_path / "demo.png"
    run = CliRunner().invoke(main, ["demo", "screenshot", "--model", str(tiny_model_dir),
                                    "--out", str(out), "--creativity", "0.2", "--raw"])
    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == str(out) and not launched  # the group did not serve the app
    (path, kw), = taken
    assert path == out and kw["creativity"] == 0.2 and kw["raw"] is True

    def missing():
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")

    monkeypatch.setattr(shot, "chromium", missing)
    run = CliRunner().invoke(main, ["demo", "screenshot", "--out", str(out)])
    assert run.exit_code == 1 and "chromium is not installed" in run.output
    assert "Traceback" not in run.output
