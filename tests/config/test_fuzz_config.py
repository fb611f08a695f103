"""Fuzzing the config parser (``clipo train a.b=c`` overrides and YAML files) with hypothesis.

Properties: an arbitrary override string or YAML file either gives a :class:`Config` or raises
:class:`ConfigError` with a one-line message; for a known key with an arbitrary value the message names that
key. Never another exception. Bugs this found (fixed in config.py): a date that does not exist
(``x=2001-02-30``) or a 5000-digit integer raised ValueError, ``[[[...`` RecursionError, ``trainer.lr=1e400``
as an integer OverflowError, NaN/inf were accepted as learning rates, unreadable YAML files raised yaml's own
errors.

Default run: ``MAX_EXAMPLES`` inputs per property, seeded; ``CLIPO_FUZZ_EXAMPLES=2000`` for a long randomised
run; ``pytest -s`` prints inputs tried and the slowest one.
"""
from __future__ import annotations

import dataclasses
import os
import typing

import pytest
import yaml

from clipo.testing import TimedCalls
from clipo.training.config import Config, ConfigError, load_config, parse_override

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e .[test])")
from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip above
from hypothesis import strategies as st  # noqa: E402

LONG_RUN = "CLIPO_FUZZ_EXAMPLES" in os.environ
MAX_EXAMPLES = int(os.environ.get("CLIPO_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not LONG_RUN, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

def _load(path=None, overrides=()):
    return load_config(path, list(overrides))


KEYS = sorted(f"{section.name}.{f.name}" for section in dataclasses.fields(Config)
              for f in dataclasses.fields(typing.get_type_hints(Config)[section.name]))


def _one_line(error: ConfigError) -> str:
    msg = str(error)
    assert msg and "\n" not in msg, msg
    return msg


_yaml_ish = st.sampled_from(["null", "~", "true", "no", "0", "-1", "1e-3", "1e999", ".nan", "-.inf", "9" * 400,
                             "1" * 5000, "2001-02-30", "2001-02-03", "[1, 2]", "[" * 3000, "{a: 1}", "a: b: c",
                             ",", "'", '"', "!!binary AAAA", "!!python/object:os.system", "&a [*a]", "*x", "|",
                             "auto", "grpo", "bf16", "\x00", "\ud800", "0x1f", "0o17", "1_000", "+.5"])
_values = _yaml_ish | st.text(max_size=30)


def test_arbitrary_override_strings_parse_or_raise_config_error():
    tally = TimedCalls("override/any-text", _load, "configs")

    @FUZZ
    @given(text=st.text(max_size=60) | st.builds(lambda k, v: f"{k}={v}", st.text(max_size=20), _values))
    def check(text):
        try:
            parse_override(text)
        except ConfigError as error:
            _one_line(error)
        try:
            tally.call(overrides=[text])
        except ConfigError as error:
            _one_line(error)

    check()
    tally.report()


def test_known_key_with_arbitrary_value_parses_or_names_the_key():
    tally = TimedCalls("override/known-key", _load, "configs")

    @FUZZ
    @given(key=st.sampled_from(KEYS), value=_values)
    def check(key, value):
        try:
            config = tally.call(overrides=[f"{key}={value}"])
        except ConfigError as error:
            assert key in _one_line(error)
        else:
            assert isinstance(config, Config)

    check()
    tally.report()


_yaml_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                            lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def test_yaml_file_with_known_key_and_arbitrary_value_parses_or_names_the_key(tmp_path):
    tally = TimedCalls("yaml/known-key", _load, "configs")
    path = tmp_path / "run.yaml"

    @FUZZ
    @given(key=st.sampled_from(KEYS), value=_yaml_values)
    def check(key, value):
        section, name = key.split(".")
        path.write_text(yaml.safe_dump({section: {name: value}}))
        try:
            tally.call(path)
        except ConfigError as error:
            assert key in _one_line(error)

    check()
    tally.report()


_SEED_YAML = b"model:\n  name_or_path: builtin:tiny\ntrainer:\n  max_steps: 3\n  lr: 1e-5\n  adam_betas: [0.9, 0.99]\n"


@st.composite
def _yaml_bytes(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    data = bytearray(_SEED_YAML)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from([b":", b"\n", b"  ", b"-", b"[", b"{", b"&a", b"*a", b"!!", b"\xff",
                                            b"\x00", b"'", b"[" * 2000, b"9" * 5000, b"2001-02-30", b"\t"])
                           | st.binary(min_size=1, max_size=6))
    return bytes(data)


def test_arbitrary_yaml_files_parse_or_raise_config_error_naming_the_file(tmp_path):
    tally = TimedCalls("yaml/bytes", _load, "configs")
    path = tmp_path / "run.yaml"

    @FUZZ
    @given(data=_yaml_bytes())
    def check(data):
        path.write_bytes(data)
        try:
            tally.call(path)
        except ConfigError as error:
            msg = _one_line(error)
            # File-level problems name the file; value problems name the key (section.field) instead.
            assert str(path) in msg or any(k in msg for k in KEYS) or "config key" in msg, msg

    check()
    tally.report()


@pytest.mark.parametrize("text, fragment", [
    ("trainer.lr=.nan", "trainer.lr: expected a finite number"),
    ("trainer.lr=1e999", "trainer.lr: expected a finite number"),
    ("trainer.lr=" + "9" * 400, "trainer.lr: expected a finite number"),
    ("trainer.seed=" + "1" * 5000, "trainer.seed: expected an integer"),
    ("trainer.max_steps=" + "[" * 5000, "trainer.max_steps: expected an integer"),
    ("x=2001-02-30", "config key 'x'"),
])
def test_values_the_fuzzer_found(text, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [text])
    msg = _one_line(err.value)
    assert fragment in msg and len(msg) < 400


def test_date_that_does_not_exist_is_kept_as_text_for_a_string_key():
    assert load_config(None, ["trainer.output_dir=2001-02-30"]).trainer.output_dir == "2001-02-30"


@pytest.mark.parametrize("content, fragment", [
    ("trainer:\n  max_steps: [1\n", "line 3"),            # unclosed flow list: reported where the file ends
    ("trainer:\n  max_steps: " + "[" * 5000 + "\n", "line 2: nests lists or mappings too deeply"),
    ("trainer:\n  seed: " + "1" * 5000 + "\n", "quote it"),
    (b"trainer:\n  output_dir: caf\xe9\n", f"line 2, byte offset {len(b'trainer:') + 1 + len(b'  output_dir: caf')}"),
])
def test_unreadable_yaml_files_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = _one_line(err.value)
    assert str(path) in msg and fragment in msg
