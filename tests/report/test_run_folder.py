"""``clipo.training.run_folder``: the names, shapes and atomic writes of a run folder, on their own.

The file names are pinned here on purpose: they are an on-disk format that existing run folders (and the
report) rely on, so changing one must fail a test.
"""
from __future__ import annotations

import ast
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from clipo.training import run_folder as rf
from clipo.training.run_folder import RunFolder, append_jsonl, read_jsonl, truncate_jsonl, write_text_atomic

PACKAGE = Path(__file__).resolve().parents[2] / "clipo"


def test_paths_keep_the_on_disk_names(tmp_path):
    run = RunFolder(tmp_path)
    assert run == RunFolder(str(tmp_path)) and os.fspath(run) == str(tmp_path)
    expected = {
        "config": "config.yaml", "metrics": "metrics.jsonl", "samples": "samples.jsonl", "evals": "eval.jsonl",
        "summary": "summary.json", "embeddings_dir": "embeddings", "checkpoints": "checkpoints", "final": "final",
        "tensorboard": "tensorboard", "report": "report",
    }
    for attribute, name in expected.items():
        assert getattr(run, attribute) == tmp_path / name, attribute
    assert run.final_head == tmp_path / "final" / "contrastive_head"
    assert run.embedding_snapshot(7) == tmp_path / "embeddings" / "step_000007.pt"
    assert run.checkpoint(12) == tmp_path / "checkpoints" / "step_000012"
    assert run.latest_pointer == tmp_path / "checkpoints" / "latest"
    assert run.checkpoint_tmp(3).parent == run.checkpoints and run.checkpoint_tmp(3).name.startswith(".tmp_step_000003_")
    assert run.jsonl_logs == (run.metrics, run.samples, run.evals, run.eval_problems)
    assert (rf.CHECKPOINT_POLICY, rf.CHECKPOINT_HEAD, rf.CHECKPOINT_STATE) == ("policy", "head", "trainer_state.pt")
    assert rf.step_of(run.embedding_snapshot(42)) == 42 and rf.step_of("latest") is None
    assert not any(tmp_path.iterdir())  # nothing is created by asking for paths
    assert run.embedding_snapshots() == [] and run.checkpoint_folders() == [] and run.stale_checkpoint_tmps() == []


def test_summary_is_written_atomically_and_as_before(tmp_path, monkeypatch):
    run = RunFolder(tmp_path / "new" / "run")
    summary = {"accuracy_before": 0.25, "accuracy_after": 0.5, "nested": {"x": [1, 2]}}
    assert run.write_summary(summary) == run.summary
    assert run.summary.read_text() == json.dumps(summary, indent=2)  # the demo's format, byte for byte
    assert run.read_summary() == summary
    assert sorted(p.name for p in run.root.iterdir()) == ["summary.json"]  # no temporary file left

    # A crash between writing the temporary file and the rename leaves the old summary whole, and no temp file.
    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(rf.os, "replace", failing_replace)
    with pytest.raises(OSError):
        run.write_summary({"other": 1})
    monkeypatch.undo()
    assert run.read_summary() == summary
    assert sorted(p.name for p in run.root.iterdir()) == ["summary.json"]

    run.summary.write_text("[1, 2]")
    assert run.read_summary() == {"value": [1, 2]}
    assert RunFolder(tmp_path / "missing").read_summary() == {}


def test_snapshot_round_trip(tmp_path):
    run = RunFolder(tmp_path)
    n = 6
    snapshot = {"step": 5, "pooled": torch.randn(n, 8).half(), "correct": torch.arange(n) % 2 == 0,
                "group_ids": torch.arange(n) // 3, "contrastive_reward": torch.randn(n),
                "extras": {"process_ok": torch.ones(n, dtype=torch.bool)}, "z": torch.randn(n, 4)}
    assert set(snapshot) == set(rf.SNAPSHOT_KEYS)
    path = run.write_snapshot(snapshot)
    assert path == run.embedding_snapshot(5) and run.embedding_snapshots() == [path]
    assert [p.name for p in run.embeddings_dir.iterdir()] == ["step_000005.pt"]  # no temporary file left
    loaded = RunFolder.read_snapshot(path)
    assert loaded["step"] == 5 and set(loaded) == set(snapshot)
    for key in ("pooled", "correct", "group_ids", "contrastive_reward", "z"):
        assert torch.equal(loaded[key], snapshot[key]), key
    assert torch.equal(loaded["extras"]["process_ok"], snapshot["extras"]["process_ok"])
    # Same zip layout as a plain torch.save to the final name (what the trainer wrote before RunFolder).
    direct = tmp_path / "direct" / path.name
    direct.parent.mkdir()
    torch.save(snapshot, direct)
    assert zipfile.ZipFile(path).namelist() == zipfile.ZipFile(direct).namelist()

    torch.save({"step": 1, "correct": torch.ones(2)}, tmp_path / "not_a_snapshot.pt")
    with pytest.raises(ValueError, match="not an embedding snapshot"):
        RunFolder.read_snapshot(tmp_path / "not_a_snapshot.pt")


def test_jsonl_helpers(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_jsonl(path) == []
    append_jsonl(path, [{"step": 1, "a": None}, {"step": 2, "a": 0.5}])
    append_jsonl(path, [{"step": 3, "a": 1.0}])
    assert path.read_text() == '{"step": 1, "a": null}\n{"step": 2, "a": 0.5}\n{"step": 3, "a": 1.0}\n'
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]

    with open(path, "a") as handle:
        handle.write('[1]\n\n{"step": 4, "a": 0.')  # a non-object line, a blank line, a half-written line
    with pytest.raises(ValueError, match=r"metrics.jsonl:4"):
        read_jsonl(path)
    skipped: list[int] = []
    assert [r["step"] for r in read_jsonl(path, skipped=skipped)] == [1, 2, 3]
    assert skipped == [4, 6]

    truncate_jsonl(path, 2)  # resume from the step-2 checkpoint: later and unreadable lines go
    assert path.read_text() == '{"step": 1, "a": null}\n{"step": 2, "a": 0.5}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
    truncate_jsonl(tmp_path / "absent.jsonl", 2)
    assert not (tmp_path / "absent.jsonl").exists()

    write_text_atomic(tmp_path / "latest", "step_000002")
    assert (tmp_path / "latest").read_text() == "step_000002"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "metrics.jsonl"]


#: Literals that name a run-folder file or folder. Only clipo/training/run_folder.py may spell them in code.
RUN_FOLDER_NAMES = {"config.yaml", "metrics.jsonl", "samples.jsonl", "eval.jsonl", "summary.json", "embeddings",
                    "checkpoints", "final", "tensorboard", "latest", "trainer_state.pt", "contrastive_head", "sharded",
                    "run.json", ".lock", "eval_problems.jsonl", "eval_results.json"}
#: Known spellings outside run_folder.py still to be moved onto RunFolder: (file, literal).
KNOWN_ELSEWHERE: set[tuple[str, str]] = set()  # (file, name) pairs allowed to spell a run-folder name


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_only_run_folder_spells_the_file_names():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).as_posix()
        if relative == "clipo/training/run_folder.py":
            continue
        for node in _code_strings(ast.parse(path.read_text())):
            if node.value in RUN_FOLDER_NAMES and (relative, node.value) not in KNOWN_ELSEWHERE:
                offenders.append(f"{relative}:{node.lineno} spells {node.value!r}; use clipo.training.run_folder")
    assert not offenders, "\n".join(offenders)
