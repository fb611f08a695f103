"""trainer.precision: fp32 (unchanged), bf16-mixed (fp32 master weights, bf16 autocast) and pure bf16.

The three 10-step runs at lr=1e-6 start from the same tiny model and train on the same rollouts: the fp32 run
samples them and the other two replay them (generation under autocast may pick a different token now and then,
which would make the comparison one of data, not of precision). Generation under autocast is tested on its own.
"""
import contextlib
import copy
import logging
import warnings

import pytest
import torch

from clipo.apps.specs import resolve_model
from clipo.models import pool_hidden, token_logp
from clipo.testing import build_tiny_model, build_tiny_tokenizer, build_tiny_trainer
from clipo.training.config import ConfigError, describe, load_config
from clipo.training.precision import (
    PRECISIONS,
    PurePrecisionWarning,
    autocast_context,
    cpu_bf16_flags,
    master_dtype,
    prepare_master_weights,
    resolve_precision,
)

STEPS = 10
# grpo's preset keeps the KL loss on, so the reference forward runs too. CLIPO is off here: its reward reads the
# pooled states, so bf16 rounding there would change the advantages, and this comparison is about the update.
RUN = ("trainer.lr=1e-6", f"trainer.max_steps={STEPS}", "clipo.enabled=false", "trainer.tensorboard=false",
       "trainer.log_samples=0", "trainer.embedding_snapshots=0", "trainer.device=cpu", "data.eval=[]")

# Tolerance of the bf16-mixed update against the fp32 one. At lr=1e-6 an AdamW step is ≈ lr·m/√v per weight, so the update mostly follows the gradient's
# sign; bf16 compute perturbs each gradient by bf16 rounding (~2^-9 relative in the logits, log-probs within ~5e-3,
# tests/trainer/test_bf16.py), which flips the sign only of elements whose gradient is near zero. Measured on this
# run (CPU, torch 2.13): relative error of the 10-step update 0.025, cosine 0.9997, 99.7% of the elements moved the
# same way. The bounds leave 4x room on the error; a broken mixed precision (pure bf16 here) gives error ≈ 1 and
# cosine ≈ 0.1.
UPDATE_REL_ERROR = 0.1
UPDATE_COSINE = 0.99


def _trainer(prompts_file, output_dir, *overrides):
    return build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={output_dir}", *RUN, *overrides])


def _weights(trainer):
    return {name: p.detach().float().clone() for name, p in trainer.model.named_parameters()}


def _flat(weights):
    return torch.cat([w.flatten() for w in weights.values()])


@pytest.fixture(scope="module")
def runs(prompts_file, tmp_path_factory):
    """precision -> (initial weights, final weights, trainer) after STEPS steps on the fp32 run's rollouts."""
    out, recorded = {}, []
    reference = _trainer(prompts_file, tmp_path_factory.mktemp("fp32"), "trainer.precision=fp32")
    collect = reference.collect

    def record():
        rollouts = collect()
        recorded.append(copy.deepcopy(rollouts))
        return rollouts

    reference.collect = record
    start = _weights(reference)
    for _ in range(STEPS):
        reference.train_step()
    out["fp32"] = (start, _weights(reference), reference)
    for precision in ("bf16-mixed", "bf16"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PurePrecisionWarning)  # bf16 warns; tested below
            trainer = _trainer(prompts_file, tmp_path_factory.mktemp(precision), f"trainer.precision={precision}")
        trainer.collect = lambda replay=iter(recorded): copy.deepcopy(next(replay))
        start = _weights(trainer)
        for _ in range(STEPS):
            trainer.train_step()
        out[precision] = (start, _weights(trainer), trainer)
    return out


def _changed_share(start, end):
    return float((_flat(end) != _flat(start)).float().mean())


def test_bf16_mixed_changes_as_many_weights_as_fp32(runs):
    fp32, mixed = _changed_share(*runs["fp32"][:2]), _changed_share(*runs["bf16-mixed"][:2])
    assert fp32 > 0.99
    assert mixed > fp32 - 0.02, (mixed, fp32)


def test_bf16_mixed_update_within_tolerance_of_fp32(runs):
    d32 = _flat(runs["fp32"][1]) - _flat(runs["fp32"][0])
    start, end, _ = runs["bf16-mixed"]
    assert torch.equal(_flat(start), _flat(runs["fp32"][0]))  # same fp32 start: no rounding of the master weights
    d = _flat(end) - _flat(start)
    assert float((d - d32).norm() / d32.norm()) < UPDATE_REL_ERROR
    assert float(torch.nn.functional.cosine_similarity(d, d32, dim=0)) > UPDATE_COSINE


def test_pure_bf16_loses_the_updates(runs):
    fp32, pure = _changed_share(*runs["fp32"][:2]), _changed_share(*runs["bf16"][:2])
    assert pure < 0.1 and pure < fp32 / 10, (pure, fp32)  # measured: 2% of the weights moved at all


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16-mixed", torch.float32),
                                              ("bf16", torch.bfloat16)])
def test_master_weights_and_adamw_state_dtype(runs, precision, dtype):
    trainer = runs[precision][2]
    assert {p.dtype for p in trainer.model.parameters()} == {dtype}
    assert {p.dtype for p in trainer.reference.parameters()} == {dtype}
    state = trainer.optimizer.state.values()
    assert state and {s[k].dtype for s in state for k in ("exp_avg", "exp_avg_sq")} == {dtype}
    assert all(b.dtype == torch.float32 for name, b in trainer.model.named_buffers() if "inv_freq" in name)


def test_fp32_runs_nothing_under_autocast(prompts_file, tmp_path):
    """trainer.precision=fp32: every lm_head output of two steps is float32 and computed outside autocast."""
    trainer = _trainer(prompts_file, tmp_path, "trainer.max_steps=2", "trainer.precision=fp32")
    seen = _record_lm_head(trainer.model)
    for _ in range(2):
        trainer.train_step()
    assert seen and {dtype for dtype, _ in seen} == {torch.float32} and not any(on for _, on in seen)


def test_auto_is_the_default_and_follows_the_hardware(prompts_file, tmp_path, caplog):
    """``auto`` (the default) is bf16-mixed on a CPU with native bf16 matrix instructions and fp32 on one
    without; the trainer resolves it, logs the choice and keeps the resolved value in its config."""
    assert load_config().trainer.precision == "auto"
    assert resolve_precision("auto", "cpu", cpu_flags=["avx512_bf16"]) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", cpu_flags=["amx_bf16"]) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", cpu_flags=[]) == "fp32"
    for explicit in ("fp32", "bf16-mixed", "bf16"):
        assert resolve_precision(explicit, "cpu", cpu_flags=["avx512_bf16"]) == explicit
    # below hidden 256 the matrix products are too small for bf16 to pay on a CPU
    tok = build_tiny_tokenizer()
    small, wide = build_tiny_model(tok, hidden_size=96), build_tiny_model(tok, hidden_size=256)
    assert resolve_precision("auto", "cpu", model=small, cpu_flags=["avx512_bf16"]) == "fp32"
    assert resolve_precision("auto", "cpu", model=wide, cpu_flags=["avx512_bf16"]) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", model=wide, cpu_flags=[]) == "fp32"
    hidden = 256 if cpu_bf16_flags() else 0
    with caplog.at_level(logging.INFO, logger="clipo.training"):
        trainer = _trainer(prompts_file, tmp_path, "trainer.max_steps=1", "trainer.precision=auto")
    expected = "bf16-mixed" if hidden and trainer.model.config.hidden_size >= hidden else "fp32"
    assert trainer.config.trainer.precision == expected
    assert f"trainer.precision=auto -> {expected}" in caplog.text
    with pytest.raises(ValueError, match="resolve it"):
        master_dtype("auto")


def test_cpu_bf16_flags_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_bf16_flags(str(info)) == ["avx512_bf16"]
    info.write_text("flags\t\t: fpu sse avx2\n")
    assert cpu_bf16_flags(str(info)) == []
    assert cpu_bf16_flags(str(tmp_path / "missing")) == []


def _record_lm_head(model):
    """Hook the lm_head: a list that fills with (output dtype, autocast on) per call."""
    seen = []
    model.get_output_embeddings().register_forward_hook(
        lambda _m, _i, out: seen.append((out.dtype, torch.is_autocast_enabled("cpu"))))
    return seen


def test_bf16_mixed_generates_and_forwards_under_autocast(prompts_file, tmp_path):
    """Rollouts, the log-prob / embedding forward, the training forward, the reference and evaluation all compute
    in bf16; log-probs, pooled states and gradients come out float32 (CLIPO on, KL on)."""
    trainer = build_tiny_trainer([f"data.train={prompts_file}", f"data.eval={prompts_file}",
                                  f"trainer.output_dir={tmp_path}", "trainer.precision=bf16-mixed",
                                  "trainer.max_steps=1", "trainer.tensorboard=false"])
    policy, reference = _record_lm_head(trainer.model), _record_lm_head(trainer.reference)
    generate = trainer.engine.generate
    in_generate = []
    trainer.engine.generate = lambda *a, **k: (in_generate.append(torch.is_autocast_enabled("cpu")), generate(*a, **k))[1]
    metrics = trainer.train_step()
    batch = trainer._last_batch
    assert in_generate == [True] and metrics["actor/update_skipped"] == 0.0
    assert len(policy) > 3 and set(policy) == {(torch.bfloat16, True)}  # decode steps + forward + training forward
    assert set(reference) == {(torch.bfloat16, True)}
    assert batch.old_logp.dtype == batch.ref_logp.dtype == batch.pooled.dtype == torch.float32
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in trainer.model.parameters())
    assert {p.dtype for p in trainer.head_trainer.head.parameters()} == {torch.float32}
    policy.clear()
    trainer.evaluate()
    assert policy and set(policy) == {(torch.bfloat16, True)}


def test_logp_and_pooling_stay_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 40, generator=g).bfloat16()
    targets = torch.randint(0, 40, (2, 5), generator=g)
    hidden, mask = torch.randn(2, 5, 16, generator=g), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    plain = token_logp(logits, targets, compute_entropy=True), pool_hidden(hidden, mask)
    with autocast_context("bf16-mixed", "cpu"):
        mixed = token_logp(logits, targets, compute_entropy=True), pool_hidden(hidden, mask)
    assert mixed[1].dtype == torch.float32 and torch.equal(mixed[1], plain[1])  # the einsum is not lowered to bf16
    for a, b in zip(mixed[0], plain[0]):
        assert a.dtype == torch.float32 and torch.equal(a, b)


# ------------------------------------------------------------------------------------------ config and helpers


def test_precision_choices_are_validated():
    with pytest.raises(ConfigError, match=r"trainer\.precision: 'fp16' is not one of auto, fp32, bf16-mixed, bf16"):
        load_config(overrides=["trainer.precision=fp16"])
    for precision in PRECISIONS:
        assert load_config(overrides=[f"trainer.precision={precision}"]).trainer.precision == precision
    assert "precision: 'auto'" in describe() and "bf16-mixed" in describe()


def test_master_dtype_and_autocast_context():
    assert master_dtype("fp32") is torch.float32 and master_dtype("fp32", "bfloat16") is torch.bfloat16
    assert master_dtype("bf16-mixed", "bfloat16") is torch.float32 and master_dtype("bf16", "float32") is torch.bfloat16
    for precision in ("fp32", "bf16"):
        assert isinstance(autocast_context(precision, "cpu"), contextlib.nullcontext)
    with autocast_context("bf16-mixed", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="trainer.precision"):
        master_dtype("fp8")


@pytest.mark.parametrize("precision, start, end, warns", [
    ("fp32", torch.float32, torch.float32, False),
    ("fp32", torch.bfloat16, torch.bfloat16, True),  # as before the switch: pure bf16, now with a warning
    ("bf16-mixed", torch.bfloat16, torch.float32, False),
    ("bf16-mixed", torch.float32, torch.float32, False),
    ("bf16", torch.float32, torch.bfloat16, True),
])
def test_prepare_master_weights_casts_and_warns(caplog, precision, start, end, warns):
    model = build_tiny_model(build_tiny_tokenizer(), dtype=start)
    before = {name: p.detach().float().clone() for name, p in model.named_parameters()}
    with caplog.at_level(logging.WARNING, logger="clipo.training"):
        with pytest.warns(PurePrecisionWarning, match="trainer.precision=bf16-mixed") if warns else \
                _no_precision_warning():
            assert prepare_master_weights(model, precision) is model
    assert {p.dtype for p in model.parameters()} == {end}
    assert {b.dtype for b in model.buffers()} == {torch.float32}  # rotary inv_freq untouched
    assert any("bf16-mixed" in r.getMessage() for r in caplog.records) == warns  # a line in the run's log too
    if end is torch.float32 and start is torch.bfloat16:  # the upcast is exact
        assert all(torch.equal(p.detach(), before[name]) for name, p in model.named_parameters())


@contextlib.contextmanager
def _no_precision_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PurePrecisionWarning)
        yield


@pytest.mark.parametrize("precision, model_dtype, loaded", [
    ("fp32", "float32", torch.float32), ("fp32", "bfloat16", torch.bfloat16),
    ("bf16-mixed", "bfloat16", torch.float32), ("bf16", "float32", torch.bfloat16),
])
def test_resolve_model_loads_the_master_dtype(tmp_path_factory, precision, model_dtype, loaded):
    folder = tmp_path_factory.getbasetemp() / "bf16_checkpoint"
    if not folder.exists():
        tokenizer = build_tiny_tokenizer()
        build_tiny_model(tokenizer, dtype=torch.bfloat16).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    config = load_config(overrides=[f"model.name_or_path={folder}", f"model.dtype={model_dtype}",
                                    f"trainer.precision={precision}"])
    model, _ = resolve_model(config)
    assert {p.dtype for p in model.parameters()} == {loaded}
