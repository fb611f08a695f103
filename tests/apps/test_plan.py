"""`clipo plan`: the table for every precision × parallel mode, the verdict, local configs, and the one-line error."""
import re

from clipo.apps.cli import main
from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer


def rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"^(fp32|bf16-mixed|bf16) ", line)]


def test_plan_of_the_paper_7b_recipe_on_8_gpus(capsys):
    assert main(["plan", "--config", "clipo_math_qwen2.5-7b", "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "Qwen/Qwen2.5-7B-Instruct (7.62 B parameters" in out
    table = rows(out)
    assert len(table) == 3 * 4  # precisions × (none, ddp, fsdp, fsdp+offload)
    assert sum("*" in row for row in table) == 1  # the config's own combination is marked
    assert all(row.endswith(("yes", "NO")) for row in table)
    verdict = next(line for line in out.splitlines() if line.startswith("Selected:"))
    assert "of 80 GiB" in verdict and ("FITS" in verdict or "DOES NOT FIT" in verdict)
    if "DOES NOT FIT" in verdict:
        assert "What to change" in out


def test_precision_and_parallel_options_restrict_the_table_and_select_the_verdict(capsys):
    argv = ["plan", "--config", "gsm8k_qwen2.5-0.5b", "--precision", "bf16", "--parallel", "none",
            "trainer.micro_batch_size=2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    table = rows(out)
    assert len(table) == 1 and table[0].startswith("bf16       none") and "*" in table[0]
    assert "Selected: bf16, none on 1 GPU(s)" in out
    assert "training micro-batch 2 ×" in out


def test_overrides_of_planner_keys_select_the_combination(capsys):
    assert main(["plan", "--config", "gsm8k_qwen2.5-0.5b", "--gpus", "4", "trainer.parallel=fsdp",
                 "trainer.precision=bf16-mixed"]) == 0
    out = capsys.readouterr().out
    assert "Selected: bf16-mixed, fsdp on 4 GPU(s)" in out
    assert any(row.startswith("bf16-mixed fsdp ") and "*" in row for row in rows(out))


def test_a_local_model_folder_is_read_from_its_config(capsys, tmp_path):
    model = build_tiny_model(build_tiny_tokenizer(), hidden_size=32, num_layers=2, heads=4, kv_heads=2,
                             intermediate=64)
    model.config.save_pretrained(tmp_path)
    assert main(["plan", f"model.name_or_path={tmp_path}", "--precision", "fp32", "--parallel", "none"]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in model.parameters())
    assert f"{params / 1e9:.2f} B parameters; 2 layers, hidden 32, 4/2 heads" in out
    assert "FITS" in out


def test_the_builtin_demo_model_plans_without_a_config(capsys):
    assert main(["plan", "--precision", "fp32", "--parallel", "none"]) == 0
    assert "builtin:tiny" in capsys.readouterr().out


def test_an_unknown_model_without_a_local_config_is_a_one_line_error(capsys, tmp_path):
    assert main(["plan", f"model.name_or_path={tmp_path / 'no-such-model'}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipo plan: cannot read the shape of model")
    assert "Qwen2.5-7B" in lines[0]
