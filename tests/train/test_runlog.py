"""log.txt (every printed line, time-stamped) and config.json (the recipe, the command line, the version)."""

from __future__ import annotations

import json
import re

import pytest

from npalexnet import __version__
from npalexnet.train import TrainConfig
from npalexnet.train.runlog import ConfigFileError, RunLog, config_record, read_config_file, write_config_json

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "


def test_every_line_is_printed_and_time_stamped_in_log_txt(tmp_path):
    printed = []
    log = RunLog(printed.append)
    log("run: here")                              # before the folder is known: kept, written first
    log.attach(tmp_path)
    log("a table\n  with two lines")
    log.record("error: only in the file")
    log.close()
    log("after close: printed only")
    assert printed == ["run: here", "a table\n  with two lines", "after close: printed only"]
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert [re.sub(STAMP, "", line, count=1) for line in lines] == ["run: here", "a table", "  with two lines",
                                                                    "error: only in the file"]
    assert all(re.match(STAMP, line) for line in lines)


def test_a_resumed_run_appends_to_its_log(tmp_path):
    for text in ("first", "second"):
        log = RunLog(lambda *a: None).attach(tmp_path)
        log(text)
        log.close()
    assert [line[21:] for line in (tmp_path / "log.txt").read_text().splitlines()] == ["first", "second"]


def test_config_json_holds_the_recipe_the_command_and_the_version(tmp_path):
    cfg = TrainConfig(lr=0.1, out=str(tmp_path))
    write_config_json(tmp_path, config_record(cfg, ["train_cifar10.py", "--lr", "0.1"]))
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["npalexnet"] == __version__ and record["command"] == ["train_cifar10.py", "--lr", "0.1"]
    assert record["config"] == cfg.to_dict() and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", record["started"])


def test_a_runs_config_json_starts_a_new_run_elsewhere(tmp_path):
    cfg = TrainConfig(lr=0.1, epochs=3, out=str(tmp_path / "old"), resume="last", override=True, test=False,
                      progress=False, distributed=True)
    write_config_json(tmp_path, config_record(cfg, None))
    options = read_config_file(tmp_path / "config.json")
    assert options["lr"] == 0.1 and options["epochs"] == 3
    # where the old run was and how that invocation ran, not what the run was
    assert not {"out", "resume", "overwrite", "override", "test", "progress", "distributed"} & set(options)
    assert TrainConfig(**options).to_dict() == {**cfg.to_dict(), "out": None, "resume": None, "override": False,
                                                "test": True,   # a --no-test run's recipe, run again, is tested
                                                "progress": True, "distributed": False}


def test_a_plain_options_file(tmp_path):
    (tmp_path / "o.json").write_text('{"lr": 0.02, "out": "runs/mine", "tta": false}')
    assert read_config_file(tmp_path / "o.json") == {"lr": 0.02, "out": "runs/mine", "tta": False}


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ("[1, 2]", "expected a JSON object of options, got list"),
    ('{"lr": 0.1, "learning_rate": 1, "epoch": 2}', "unknown options epoch, learning_rate"),
    ('{"lr": "fast"}', "lr must be a number, got 'fast'"),
    ('{"tta": 1}', "tta must be true or false, got 1"),
    ('{"variant": 3}', "variant must be a string, got 3"),
])
def test_bad_config_files_are_one_line(tmp_path, text, message):
    (tmp_path / "c.json").write_text(text)
    with pytest.raises(ConfigFileError, match=re.escape(message)):
        read_config_file(tmp_path / "c.json")
    with pytest.raises(ConfigFileError, match="cannot read it"):
        read_config_file(tmp_path / "missing.json")


def test_drop_earlier_keeps_this_runs_lines_and_a_full_disk_costs_only_the_log(tmp_path, monkeypatch):
    from npalexnet.train import runlog
    (tmp_path / "log.txt").write_text("2026-01-01 00:00:00  the replaced run\n")
    log = runlog.RunLog(echo=lambda text: None)
    log("first")
    log.attach(tmp_path)
    log("second")

    def full(path, data):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(runlog, "atomic_write_bytes", full)
    assert "No space left" in log.drop_earlier()
    log("third")
    assert "the replaced run" in (tmp_path / "log.txt").read_text()
    monkeypatch.undo()
    assert log.drop_earlier() is None
    log("fourth")
    log.close()
    assert [line.split("  ", 1)[1] for line in (tmp_path / "log.txt").read_text().splitlines()] == \
        ["first", "second", "third", "fourth"]
