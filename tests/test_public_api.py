"""The public names survive the move into layers, `import clipo` stays light, and engines come from one factory."""
import subprocess
import sys

import pytest

import clipo


@pytest.mark.parametrize("name", sorted(clipo.__all__))
def test_every_public_name_resolves(name):
    assert getattr(clipo, name) is not None


def test_names_users_rely_on():
    from clipo.core.advantages import group_advantages
    from clipo.core.contrastive import ContrastiveHead
    from clipo.rewards import score_answer

    assert clipo.group_advantages is group_advantages and clipo.ContrastiveHead is ContrastiveHead
    assert clipo.score_answer is score_answer
    assert clipo.score_answer("so the answer is \\boxed{18}", "18") == 1.0


def test_import_clipo_does_not_load_transformers():
    code = "import sys, clipo; clipo.group_advantages; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_make_engine_reads_rollout_engine_and_names_the_choices():
    from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer
    from clipo.rollout import ENGINES, HFGenerateEngine, RolloutEngine, make_engine, register_engine
    from clipo.training.config import ConfigError, load_config

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    config = load_config(overrides=["rollout.micro_batch_size=3"])
    engine = make_engine(config, model, tokenizer)
    assert isinstance(engine, HFGenerateEngine) and engine.micro_batch_size == 3
    assert make_engine(config, model, tokenizer, micro_batch_size=7).micro_batch_size == 7

    class EchoEngine(RolloutEngine):
        def __init__(self, rollout, model, tokenizer):
            self.rollout = rollout

        def generate(self, prompts, params):  # pragma: no cover - never called here
            raise NotImplementedError

    with pytest.raises(ConfigError, match="rollout.engine.*hf"):
        load_config(overrides=["rollout.engine=echo"])
    register_engine("echo", EchoEngine)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_engine("echo", EchoEngine)
        engine = make_engine(load_config(overrides=["rollout.engine=echo"]), model, tokenizer)
        assert isinstance(engine, EchoEngine) and engine.rollout.engine == "echo"
    finally:
        del ENGINES["echo"]


@pytest.mark.parametrize("name", ["demo", "gsm8k_qwen2.5-0.5b", "clipo_gsm8k_qwen2.5-3b", "clipo_math_qwen2.5-7b"])
def test_shipped_recipes_load_by_name(name):
    from clipo.training.config import RECIPES_DIR, load_config

    assert (RECIPES_DIR / f"{name}.yaml").is_file()
    config = load_config(name)
    assert config.trainer.max_steps > 0
