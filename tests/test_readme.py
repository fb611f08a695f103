"""The README's Python examples: ```python blocks run as written; ```py blocks (sketches that need a model, data
or an optional extra such as TRL) must at least compile."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show the library in use"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_sketches_compile():
    sketches = re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S)
    assert sketches, "the TRL sketch is fenced as ```py"
    for block in sketches:
        compile(block, str(README), "exec")
