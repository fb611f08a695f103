"""Typed config: YAML + dotted overrides, type checks, algorithm presets, cross-field validation, describe()."""
import dataclasses
import typing
from pathlib import Path

import pytest

import clipo
from clipo.core.algorithms import ALGORITHMS
from clipo.training.config import Config, ConfigError, describe, load_config, parse_override

RECIPES = sorted((Path(clipo.__file__).parent / "recipes").glob("*.yaml"))


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_load_and_validate():
    config = load_config()
    assert isinstance(config, Config)
    assert config.algorithm.name == "grpo" and config.trainer.max_steps == 20


def test_yaml_then_overrides(tmp_path):
    path = write(tmp_path, "trainer:\n  max_steps: 7\n  lr: 2.0e-5\nrollout:\n  n: 4\n")
    config = load_config(path, ["trainer.max_steps=9", "clipo.enabled=false"])
    assert config.trainer.max_steps == 9  # the override wins over the file
    assert config.trainer.lr == 2e-5 and config.rollout.n == 4  # file values kept
    assert config.clipo.enabled is False
    assert config.model.name_or_path == "builtin:tiny"  # untouched default


def test_empty_yaml_is_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "")).to_dict() == load_config().to_dict()


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="trainer"):
        load_config(write(tmp_path, "trainer: 5\n"))


@pytest.mark.parametrize("key, suggestion", [
    ("trainer.max_step", "max_steps"), ("rollout.temprature", "temperature"), ("clipo.head_sise", "head_size")])
def test_unknown_key_suggests_closest(key, suggestion):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[f"{key}=1"])
    assert key in str(info.value) and f"did you mean {suggestion!r}" in str(info.value)


def test_unknown_key_in_yaml_suggests_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'max_new_tokens'"):
        load_config(write(tmp_path, "rollout:\n  max_new_token: 5\n"))


def test_unknown_section_names_the_sections():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["trainr.max_steps=3"])
    for section in ("model", "data", "reward", "algorithm", "clipo", "rollout", "trainer"):
        assert section in str(info.value)
    with pytest.raises(ConfigError, match="section.field"):
        load_config(overrides=["max_steps=3"])


def test_override_without_equals():
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_override("trainer.max_steps")
    assert parse_override("trainer.max_steps=5") == ("trainer.max_steps", 5)
    assert parse_override("model.system_prompt=a=b") == ("model.system_prompt", "a=b")


@pytest.mark.parametrize("override, field, words", [
    ("rollout.n=2.5", "rollout.n", "integer"),
    ("rollout.n=true", "rollout.n", "integer"),
    ("trainer.lr=fast", "trainer.lr", "number"),
    ("clipo.enabled=yes please", "clipo.enabled", "true or false"),
    ("clipo.enabled=1", "clipo.enabled", "true or false"),
    ("model.name_or_path=[a, b]", "model.name_or_path", "string"),
    ("data.eval={a: 1}", "data.eval", "list"),
])
def test_wrong_types_name_the_field(override, field, words):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert field in str(info.value) and words in str(info.value)


def test_scientific_notation_accepted_as_float(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string; float fields accept it anyway, from a file and an override.
    config = load_config(write(tmp_path, "trainer:\n  lr: 1e-3\nclipo:\n  head_lr: 5e-4\n"))
    assert config.trainer.lr == pytest.approx(1e-3) and isinstance(config.trainer.lr, float)
    assert config.clipo.head_lr == pytest.approx(5e-4)
    config = load_config(overrides=["trainer.lr=1e-3", "trainer.grad_clip=1"])
    assert config.trainer.lr == pytest.approx(1e-3) and isinstance(config.trainer.lr, float)
    assert config.trainer.grad_clip == 1.0 and isinstance(config.trainer.grad_clip, float)  # int → float


def test_list_from_comma_string_and_yaml_list(tmp_path):
    config = load_config(overrides=["data.eval=a.jsonl, b.parquet", "trainer.adam_betas=0.9,0.95"])
    assert config.data.eval == ["a.jsonl", "b.parquet"]
    assert config.trainer.adam_betas == [0.9, 0.95]
    assert load_config(overrides=["data.eval=[x.jsonl, y.jsonl]"]).data.eval == ["x.jsonl", "y.jsonl"]
    assert load_config(overrides=["data.eval=one.jsonl"]).data.eval == ["one.jsonl"]
    assert load_config(overrides=["data.eval=[]"]).data.eval == []
    assert load_config(write(tmp_path, 'rollout:\n  stop: ["\\n\\n", "</s>"]\n')).rollout.stop == ["\n\n", "</s>"]


def test_list_defaults_are_not_shared():
    a, b = Config(), Config()
    a.trainer.adam_betas.append(0.5)
    assert b.trainer.adam_betas == [0.9, 0.999]


def test_optional_fields_accept_null():
    config = load_config(overrides=["model.gguf_file=null", "model.system_prompt=Be brief."])
    assert config.model.gguf_file is None and config.model.system_prompt == "Be brief."


# ------------------------------------------------------------------------------------------ presets


def test_grpo_preset():
    a = load_config(overrides=["algorithm.name=grpo"]).algorithm
    assert a.kl_coef == 0.001 and a.scale_by_std is True and a.loss_agg == "token-mean"
    assert a.eps_low == 0.2 and a.eps_high == 0.2 and a.dual_clip == 3.0


def test_dapo_preset():
    config = load_config(overrides=["algorithm.name=dapo", "rollout.max_new_tokens=100"])
    a = config.algorithm
    assert a.eps_low == 0.2 and a.eps_high == 0.28
    assert a.dynamic_sampling is True and a.overlong_penalty is True
    assert config.reward.incorrect_score == -1.0
    assert a.kl_coef == 0.0 and a.loss_agg == "token-mean"
    assert a.overlong_cache == 20  # max_new_tokens // 5


def test_dr_grpo_preset():
    config = load_config(overrides=["algorithm.name=dr_grpo", "rollout.max_new_tokens=96"])
    a = config.algorithm
    assert a.scale_by_std is False and a.loss_agg == "seq-mean-token-sum-constlen"
    assert a.norm_len == 96 and a.kl_coef == 0.0


@pytest.mark.parametrize("name, eps_low, eps_high", [("gspo", 3e-4, 4e-4), ("gmpo", 0.4, 0.4)])
def test_gspo_gmpo_clip_ranges(name, eps_low, eps_high):
    a = load_config(overrides=[f"algorithm.name={name}"]).algorithm
    assert a.eps_low == pytest.approx(eps_low) and a.eps_high == pytest.approx(eps_high)
    assert a.kl_coef == 0.0


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_preset_fills_every_none_knob(name):
    config = load_config(overrides=[f"algorithm.name={name}"])
    hints = typing.get_type_hints(type(config.algorithm))
    for f in dataclasses.fields(config.algorithm):
        if type(None) in typing.get_args(hints[f.name]):
            assert getattr(config.algorithm, f.name) is not None, f.name
    assert config.reward.incorrect_score is not None


def test_explicit_values_win_over_presets(tmp_path):
    config = load_config(overrides=["algorithm.name=dapo", "algorithm.eps_high=0.3", "algorithm.dynamic_sampling=false",
                                    "reward.incorrect_score=0", "algorithm.kl_coef=0.01", "algorithm.norm_len=7"])
    a = config.algorithm
    assert a.eps_high == 0.3 and a.dynamic_sampling is False and a.kl_coef == 0.01 and a.norm_len == 7
    assert config.reward.incorrect_score == 0.0  # 0 is a value, not "unset"
    assert a.overlong_penalty is True and a.eps_low == 0.2  # untouched knobs still come from the preset
    # An explicit zero is kept too (GRPO's preset KL is 0.001).
    assert load_config(overrides=["algorithm.kl_coef=0"]).algorithm.kl_coef == 0.0
    # Same from a file, with the algorithm named after the knob.
    config = load_config(write(tmp_path, "algorithm:\n  eps_high: 0.5\n  name: gmpo\n"))
    assert config.algorithm.eps_high == 0.5 and config.algorithm.eps_low == 0.4


def test_unknown_algorithm_lists_the_choices():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["algorithm.name=ppo"])
    for name in ALGORITHMS:
        assert name in str(info.value)


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("overrides, match", [
    (["trainer.mini_batches=9", "trainer.prompts_per_step=8"], "trainer.mini_batches"),
    (["rollout.n=1"], "rollout.n"),
    (["rollout.top_p=0"], "rollout.top_p"),
    (["rollout.top_p=1.5"], "rollout.top_p"),
    (["rollout.n=0", "clipo.enabled=false"], "rollout.n"),
    (["trainer.lr=-1e-5"], "trainer.lr"),
    (["algorithm.dual_clip=0.5"], "algorithm.dual_clip"),
    (["trainer.adam_betas=0.9"], "trainer.adam_betas"),
    (["data.train=null"], "data.train"),
    (["model.dtype=float8"], "model.dtype"),
    (["algorithm.loss_agg=sum"], "algorithm.loss_agg"),
    (["clipo.level=galaxy"], "clipo.level"),
    (["reward.format_policy=loose"], "reward.format_policy"),
])
def test_cross_field_and_choice_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)


def test_valid_edge_cases():
    load_config(overrides=["trainer.mini_batches=8", "trainer.prompts_per_step=8"])
    load_config(overrides=["rollout.n=1", "clipo.enabled=false"])
    load_config(overrides=["rollout.n=1", "clipo.level=batch"])  # batch-level positives come from other prompts
    load_config(overrides=["rollout.top_p=1.0", "algorithm.dual_clip=0"])


def test_describe_lists_every_field():
    text = describe()
    for section in dataclasses.fields(Config):
        assert f"{section.name}:" in text.splitlines()
        cls = typing.get_type_hints(Config)[section.name]
        for f in dataclasses.fields(cls):
            assert f"  {f.name}: " in text, f"{section.name}.{f.name}"
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help text"
            assert f.metadata["help"] in text


def test_round_trip_through_saved_yaml(tmp_path):
    from clipo.training.config import save_config

    config = load_config(overrides=["algorithm.name=dapo", "rollout.n=4", "data.eval=a.jsonl,b.jsonl"])
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").to_dict() == config.to_dict()


def test_recipes_exist():
    assert any(p.name == "demo.yaml" for p in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads_and_validates(recipe):
    config = load_config(recipe)
    assert config.algorithm.name in ALGORITHMS
    assert config.trainer.max_steps >= 0


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["trainer.qqqqqqqq=1"])
    assert "valid keys" in str(info.value) and "max_steps" in str(info.value)


@pytest.mark.parametrize("override", ["algorithm.eps_low=-0.2", "algorithm.eps_high=-0.1"])
def test_negative_clip_ranges_are_rejected(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(overrides=[override])


def test_list_overrides_split_on_commas_unless_a_part_would_be_empty():
    # "a,b" is two files; "," alone is one stop string (splitting it would leave two empty strings)
    assert load_config(overrides=["data.eval=a.parquet, b.jsonl"]).data.eval == ["a.parquet", "b.jsonl"]
    assert load_config(overrides=["rollout.stop=,"]).rollout.stop == [","]
    # a YAML list, with a double-quoted escape for two newlines
    assert load_config(overrides=['rollout.stop=[</answer>, "\\n\\n"]']).rollout.stop == ["</answer>", "\n\n"]
