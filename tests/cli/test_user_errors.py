"""Every user error of the `clipo` command is one line on stderr, exit 2, before anything heavy loads;
anything unexpected is one line and exit 1 unless --debug / CLIPO_DEBUG=1 asks for the traceback."""
import json
import os

import pytest
import yaml

import clipo.apps.specs as specs
from clipo.apps.cli import main
from clipo.data.render import chooses_chat_template, render_prompt
from clipo.training.config import load_config


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model or tokenizer would be loaded."""
    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(specs, "resolve_model", fail)
    monkeypatch.setattr(specs, "load_tokenizer", fail)
    monkeypatch.setattr(specs, "load_policy", fail)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "What is 1+1?", "answer": "2"}) + "\n")
    return path


def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


def test_missing_local_model_path_is_not_sent_to_the_hub(capsys, tmp_path, data_file, no_model_load):
    missing = tmp_path / "no_such_model"
    out = tmp_path / "run"
    assert main(["train", f"model.name_or_path={missing}", f"data.train={data_file}", "data.eval=[]",
                 f"trainer.output_dir={out}"]) == 2
    one_line_error(capsys, "model.name_or_path", str(missing))
    assert not out.exists()


@pytest.mark.parametrize("name", ["./nowhere", "../nowhere/model", "~/nowhere-clipo-model", "runs/x/final"])
def test_local_looking_names_are_checked(name):
    assert specs.looks_local(name)


@pytest.mark.parametrize("name", ["Qwen/Qwen2.5-0.5B-Instruct", "gpt2"])
def test_hub_ids_are_not_local(name):
    assert not specs.looks_local(name)


def test_missing_gguf_file_in_the_model_folder(capsys, tmp_path, data_file, no_model_load):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "other.gguf").write_text("")
    assert main(["train", f"model.name_or_path={folder}", "model.gguf_file=model.Q8_0.gguf",
                 f"data.train={data_file}", "data.eval=[]", f"trainer.output_dir={tmp_path / 'run'}"]) == 2
    one_line_error(capsys, "model.gguf_file", "model.Q8_0.gguf", "other.gguf")


def test_output_dir_that_is_a_file(capsys, tmp_path, data_file, no_model_load):
    blocker = tmp_path / "taken"
    blocker.write_text("")
    assert main(["train", f"model.name_or_path={tmp_path}", f"data.train={data_file}", "data.eval=[]",
                 f"trainer.output_dir={blocker / 'run'}"]) == 2
    one_line_error(capsys, "trainer.output_dir", str(blocker))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere (tests/trainer/test_disk_faults.py uses a read-only mount instead)")
def test_output_dir_not_writable(capsys, tmp_path, data_file, no_model_load):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["train", f"model.name_or_path={tmp_path}", f"data.train={data_file}", "data.eval=[]",
                     f"trainer.output_dir={locked / 'run'}"]) == 2
    finally:
        locked.chmod(0o700)
    one_line_error(capsys, "trainer.output_dir", "not writable")


def test_missing_data_file(capsys, tmp_path, no_model_load):
    assert main(["train", f"model.name_or_path={tmp_path}", f"data.train={tmp_path / 'nope.jsonl'}",
                 f"trainer.output_dir={tmp_path / 'run'}"]) == 2
    one_line_error(capsys, "nope.jsonl")
    assert not (tmp_path / "run").exists()


def test_train_on_own_data_without_a_model_refuses_the_demo_model(capsys, tmp_path, data_file, no_model_load):
    assert main(["train", f"data.train={data_file}", f"trainer.output_dir={tmp_path / 'run'}"]) == 2
    one_line_error(capsys, "model.name_or_path=", "builtin:tiny", "data.train")
    assert not (tmp_path / "run").exists()


def test_config_file_without_a_model_refuses_the_demo_model(capsys, tmp_path, data_file, no_model_load):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": str(data_file)}}))
    assert main(["train", "--config", str(config)]) == 2
    one_line_error(capsys, "model.name_or_path=", "builtin:tiny")


def test_eval_on_own_data_without_a_model_refuses_the_demo_model(capsys, data_file, no_model_load):
    assert main(["eval", f"data.eval={data_file}"]) == 2
    one_line_error(capsys, "model.name_or_path=", "builtin:tiny", "data.eval")


def test_eval_with_a_missing_local_model(capsys, tmp_path, data_file, no_model_load):
    assert main(["eval", "--model", str(tmp_path / "gone"), f"data.eval={data_file}"]) == 2
    one_line_error(capsys, "model.name_or_path", "gone")


def test_unexpected_error_is_one_line_and_exit_1(capsys, monkeypatch, tmp_path, data_file):
    def boom(config, **kwargs):
        raise RuntimeError("something broke\nsecond line")
    monkeypatch.setattr("clipo.apps.cli.build_trainer", boom)
    monkeypatch.delenv("CLIPO_DEBUG", raising=False)
    assert main(["train", f"model.name_or_path={tmp_path}", f"data.train={data_file}"]) == 1
    err = one_line_error(capsys, "clipo: error: RuntimeError: something broke second line", "--debug")
    assert "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch, tmp_path, data_file):
    def boom(config, **kwargs):
        raise RuntimeError("something broke")
    monkeypatch.setattr("clipo.apps.cli.build_trainer", boom)
    with pytest.raises(RuntimeError, match="something broke"):
        main(["--debug", "train", f"model.name_or_path={tmp_path}", f"data.train={data_file}"])
    monkeypatch.setenv("CLIPO_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something broke"):
        main(["train", f"model.name_or_path={tmp_path}", f"data.train={data_file}"])


def test_a_failed_setup_leaves_no_empty_output_folder(capsys, monkeypatch, tmp_path, data_file):
    out = tmp_path / "run"

    class FailingTrainer:
        def __init__(self, config, **kwargs):
            out.mkdir(parents=True)
            raise RuntimeError("setup failed")

    monkeypatch.setattr(specs, "RLTrainer", FailingTrainer)
    monkeypatch.setattr(specs, "resolve_model", lambda config: (object(), object()))
    monkeypatch.delenv("CLIPO_DEBUG", raising=False)
    assert main(["train", f"model.name_or_path={tmp_path}", f"data.train={data_file}", "data.eval=[]",
                 f"trainer.output_dir={out}"]) == 1
    one_line_error(capsys, "setup failed")
    assert not out.exists()


# ------------------------------------------------------------------ model.use_chat_template: auto | true | false


def test_use_chat_template_defaults_to_auto_and_accepts_booleans(capsys):
    assert load_config().model.use_chat_template == "auto"
    assert load_config(None, ["model.use_chat_template=false"]).model.use_chat_template is False
    assert load_config(None, ["model.use_chat_template=true"]).model.use_chat_template is True
    assert main(["config", "model.use_chat_template=maybe"]) == 2
    one_line_error(capsys, "model.use_chat_template")
    assert main(["config"]) == 0
    assert "use_chat_template" in capsys.readouterr().out


class _Tokenizer:
    def __init__(self, template):
        self.chat_template = template

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "<chat>" + messages[-1]["content"]


def test_auto_uses_the_template_only_when_the_tokenizer_has_one():
    assert render_prompt("hi", _Tokenizer(None), use_chat_template="auto") == "hi"
    assert render_prompt("hi", _Tokenizer("{{x}}"), use_chat_template="auto") == "<chat>hi"
    assert not chooses_chat_template(_Tokenizer(None)) and chooses_chat_template(_Tokenizer("t"))
    with pytest.raises(ValueError, match="chat template"):
        render_prompt("hi", _Tokenizer(None), use_chat_template=True)
