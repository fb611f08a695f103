"""data.max_prompt_tokens (over-long prompts dropped before training) and clean epochs, on the tiny trainer.

The tiny tokenizer is character level with a few whole-word tokens, and its Qwen-style chat template renders a
prompt ``p`` as ``<|im_start|>user\\n{p}<|im_end|>\\n<|im_start|>assistant\\n``: 8 tokens (``<|im_start|>``,
``user``, ``\\n``, ``<|im_end|>``, ``\\n``, ``<|im_start|>``, ``assistant``, ``\\n``) plus one per character of
``p``. So ``"a+b=?"`` has 13 tokens and ``"a+b+c+d=?"`` 17.
"""
import json
import logging

import pytest

from clipo.apps.cli import main
from clipo.apps.report.markdown import render_markdown
from clipo.apps.report.read import load_run
from clipo.data import epoch_order
from clipo.testing import build_tiny_model, build_tiny_tokenizer, build_tiny_trainer
from clipo.training.config import ConfigError
from clipo.training.pipeline import prompt_lengths
from clipo.training.tracking import read_metrics

SHORT, LONG = 13, 17  # tokens of a rendered "a+b=?" and "a+b+c+d=?"


def _write(path, short: int, long: int):
    """``short`` prompts "a+b=?" then ``long`` prompts "a+b+c+d=?" (digits cycle, so every prompt differs)."""
    rows = [{"prompt": f"{i % 10}+{i // 10}=?", "answer": "0"} for i in range(short)]
    rows += [{"prompt": f"{i % 10}+{i // 10}+1+2=?", "answer": "0"} for i in range(long)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recording(trainer):
    """Record every batch the trainer draws, with the epoch the iterator was in for it."""
    drawn = []
    real = trainer.data_iter.next_batch

    def next_batch(size):
        batch = real(size)
        drawn.append((trainer.data_iter.epoch, [e.index for e in batch]))
        return batch

    trainer.data_iter.next_batch = next_batch
    return drawn


def _expected_batches(trainer, epochs: int, size: int = 4):
    """What drop_last gives: each epoch's order of the kept prompts, cut in whole batches."""
    kept = trainer.train_data
    out = []
    for e in range(epochs):
        order = epoch_order(len(kept), seed=0, epoch=e)
        out += [(e, [kept[i].index for i in order[b * size:(b + 1) * size]]) for b in range(len(kept) // size)]
    return out


def test_prompt_lengths_are_the_rendered_token_counts(tmp_path):
    trainer = build_tiny_trainer([f"data.train={_write(tmp_path / 'p.jsonl', 4, 4)}", "data.eval=[]",
                                  f"trainer.output_dir={tmp_path / 'run'}"])
    assert prompt_lengths(trainer.config, trainer.tokenizer, trainer.train_data) == [SHORT] * 4 + [LONG] * 4
    # The engine's own tokenization of the rendered text (left-padded batch) has the same real-token counts.
    batch = trainer.engine.generate([trainer.render(e) for e in trainer.train_data],
                                    trainer.sampling(n=1, temperature=0.0, seed=0))
    assert batch.prompt_mask.sum(-1).tolist() == [SHORT] * 4 + [LONG] * 4


def test_long_prompts_are_dropped_counted_and_epochs_end_cleanly(tmp_path, caplog):
    # 26 short + 6 long prompts, limit 14 tokens: the 6 long ones go, 26 stay; batches of 4 give
    # 26 // 4 = 6 steps per epoch (2 prompts of each epoch are skipped), so step 7 opens epoch 1.
    data = _write(tmp_path / "p.jsonl", 26, 6)
    with caplog.at_level(logging.INFO, logger="clipo.training"):
        trainer = build_tiny_trainer([f"data.train={data}", "data.eval=[]", f"trainer.output_dir={tmp_path / 'run'}",
                                      "data.max_prompt_tokens=14", "trainer.max_steps=7", "clipo.enabled=false",
                                      "trainer.tensorboard=false", "trainer.log_samples=0",
                                      "trainer.embedding_snapshots=0"])
    assert "data: 6 of 32 prompts longer than data.max_prompt_tokens=14 tokens were dropped" in caplog.text
    assert "6 steps per epoch" in caplog.text
    assert len(trainer.train_data) == 26 and sorted(e.index for e in trainer.train_data) == list(range(26))
    drawn = _recording(trainer)
    trainer.fit()
    assert drawn == _expected_batches(trainer, 2)[:7]
    assert all(index < 26 for _, batch in drawn for index in batch)  # never a dropped (long) prompt
    epoch0 = [i for e, batch in drawn if e == 0 for i in batch]
    assert len(epoch0) == len(set(epoch0)) == 24  # each prompt at most once per epoch
    rows = read_metrics(tmp_path / "run")
    assert rows[0]["data/filtered_long_prompts"] == 6 and rows[0]["data/steps_per_epoch"] == 6
    assert all("data/steps_per_epoch" not in r for r in rows[1:])
    assert [r["data/epoch"] for r in rows] == [0, 0, 0, 0, 0, 0, 1]
    markdown = render_markdown(load_run(tmp_path / "run"), {}, tmp_path / "report")
    assert ("6 prompts longer than data.max_prompt_tokens=14 dropped, 6 steps per epoch, epoch 1 (from 0) at the "
            "last step") in markdown


def test_eval_sets_are_kept_whole_and_their_long_prompts_counted(tmp_path, caplog):
    data = _write(tmp_path / "p.jsonl", 26, 6)
    with caplog.at_level(logging.WARNING, logger="clipo.training"):
        trainer = build_tiny_trainer([f"data.train={data}", f"data.eval={data}", "data.max_eval_examples=0",
                                      f"trainer.output_dir={tmp_path / 'run'}", "data.max_prompt_tokens=14"])
    assert "eval set 'p' has 6 of 32 prompts longer than data.max_prompt_tokens=14 tokens; they are kept" in caplog.text
    assert len(trainer.eval_data["p"]) == 32 and len(trainer.train_data) == 26


def test_dapo_refills_across_an_epoch_boundary(tmp_path):
    # 22 short prompts (no limit): 5 batches of 4 per epoch, 2 skipped. Every second verification scores all
    # rollouts 0 (no informative group), so each DAPO step draws 2 batches: step 3 takes epoch 0's fifth batch
    # and epoch 1's first, and logs the epoch of its last batch.
    data = _write(tmp_path / "p.jsonl", 22, 0)
    trainer = build_tiny_trainer([f"data.train={data}", "data.eval=[]", f"trainer.output_dir={tmp_path / 'run'}",
                                  "algorithm.name=dapo", "trainer.max_steps=3", "clipo.enabled=false",
                                  "trainer.tensorboard=false", "trainer.log_samples=0", "trainer.embedding_snapshots=0"])
    calls = []

    def alternating(responses, examples):
        calls.append(len(responses))
        scores = [0.0] * len(responses) if len(calls) % 2 else [float(k % 2) for k in range(len(responses))]
        return scores, {}

    trainer.score = alternating
    drawn = _recording(trainer)
    trainer.fit()
    assert drawn == _expected_batches(trainer, 2)[:6]
    assert [e for e, _ in drawn] == [0, 0, 0, 0, 0, 1]
    rows = read_metrics(tmp_path / "run")
    assert [r["rollout/gen_rounds"] for r in rows] == [2, 2, 2]
    assert [r["data/epoch"] for r in rows] == [0, 0, 1]
    assert rows[0]["data/steps_per_epoch"] == 5 and "data/filtered_long_prompts" not in rows[0]


def test_a_limit_that_drops_everything_is_a_config_error(tmp_path):
    data = _write(tmp_path / "p.jsonl", 3, 2)  # lengths 13, 13, 13, 17, 17: median 13, longest 17
    with pytest.raises(ConfigError, match=r"data.max_prompt_tokens=12 drops every one of the 5 training prompts "
                                          r"\(rendered prompt lengths: median 13, longest 17 tokens\)"):
        build_tiny_trainer([f"data.train={data}", "data.eval=[]", f"trainer.output_dir={tmp_path / 'run'}",
                            "data.max_prompt_tokens=12"])
    with pytest.raises(ConfigError, match=r"trainer.prompts_per_step: 3 training prompts after data.max_prompt_tokens "
                                          r"cannot fill one batch of 4"):
        build_tiny_trainer([f"data.train={data}", "data.eval=[]", f"trainer.output_dir={tmp_path / 'run'}",
                            "data.max_prompt_tokens=13"])


def test_cli_exits_2_naming_the_key(tmp_path, capsys):
    folder = tmp_path / "model"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    data = _write(tmp_path / "p.jsonl", 8, 0)
    capsys.readouterr()  # drop save_pretrained's progress bars
    code = main(["train", f"model.name_or_path={folder}", f"data.train={data}", "data.eval=[]",
                 "data.max_prompt_tokens=5", f"trainer.output_dir={tmp_path / 'run'}", "trainer.device=cpu",
                 "trainer.progress=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("clipo: config error: data.max_prompt_tokens=5 drops every one of the 8 training prompts")
