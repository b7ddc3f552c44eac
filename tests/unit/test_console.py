"""The console: stage lines, progress bars and their plain-line fallback, verbosity (no Ray)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from labelmill.console import (
    BarProgress,
    Console,
    PlainProgress,
    Progress,
    current,
    format_duration,
    format_label_summary,
    progress,
    use_console,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 42.4, 75.2, 3725, -3)] == [
        "0s",
        "42s",
        "1m15s",
        "1h02m05s",
        "0s",
    ]


def test_plain_progress_prints_at_most_once_per_interval_then_a_final_line() -> None:
    lines: list[str] = []
    clock = Clock()
    bar = PlainProgress(lines.append, "label t", 200, "docs", 30.0, clock=clock, ticker=False)
    clock.now += 10
    bar.update(20)  # 10 s since start: under the interval, no line
    assert lines == []
    clock.now += 30
    bar.update(30)  # 40 s, 50 docs: 1.25 docs/s, 150 left -> ETA 2m00s
    assert lines == ["  label t: 50/200 docs (25%), 1.25 docs/s, ETA 2m00s"]
    clock.now += 5
    bar.update(10)  # 5 s after the last line: silent
    assert len(lines) == 1
    bar.note("epoch 2/4")
    clock.now += 55
    bar.update(140)
    bar.close()
    bar.close()  # closing twice prints once
    assert lines[1:] == [
        "  label t: 200/200 docs (100%), 2.00 docs/s, ETA 0s, epoch 2/4",
        "  label t: 200/200 docs (100%), 2.00 docs/s, in 1m40s, epoch 2/4",
    ]


def test_plain_progress_without_total_says_elapsed() -> None:
    lines: list[str] = []
    clock = Clock()
    bar = PlainProgress(lines.append, "student", None, "steps", 1.0, clock=clock, ticker=False)
    clock.now += 2
    bar.update(3)
    assert lines == ["  student: 3 steps, 1.50 steps/s, 2s elapsed"]


def test_ticker_prints_while_nothing_completes() -> None:
    out = io.StringIO()
    console = Console(out, interval_s=0.05, tty=False)
    bar = console.progress("label slow", 10, "docs")
    import time

    time.sleep(1.3)  # the ticker wakes every min(1 s, interval): at least one line by now
    bar.close()
    text = out.getvalue().splitlines()
    assert text[0].startswith("  label slow: 0/10 docs (0%), 0.00 docs/s")
    assert text[-1].startswith("  label slow: 0/10 docs (0%)") and " in " in text[-1]


def test_verbosity_levels() -> None:
    out = io.StringIO()
    console = Console(out, "quiet", tty=False)
    console.stage("label", "2 teachers")
    console.info("hello")
    bar = console.progress("label t", 5)
    assert type(bar) is Progress  # draws nothing
    bar.update(5)
    bar.close()
    console.summary("the table")
    console.error("labelmill: boom")
    assert out.getvalue() == "the table\nlabelmill: boom\n"
    assert console.lines == 2

    out = io.StringIO()
    errors = io.StringIO()
    console = Console(out, "normal", tty=False, error_stream=errors)
    console.stage("label", "2 teachers")
    console.stage("aggregate")
    console.summary("a\nb")
    console.error("bad")
    assert out.getvalue() == "==> label: 2 teachers\n==> aggregate\na\nb\n"
    assert errors.getvalue() == "bad\n" and console.lines == 5
    assert isinstance(console.progress("x", 1), PlainProgress)
    with pytest.raises(ValueError, match=r"verbosity must be one of .* got 'loud'"):
        Console(out, "loud")
    with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
        Console(out, interval_s=0)


def test_terminal_gets_a_tqdm_bar() -> None:
    out = io.StringIO()
    console = Console(out, tty=True)
    bar = console.progress("label t", 4, "docs")
    assert isinstance(bar, BarProgress)
    bar.update(4)
    bar.note("epoch 1/1")
    bar.close()
    drawn = out.getvalue()
    assert "label t" in drawn and "4/4" in drawn and "docs/s" in drawn and "epoch 1/1" in drawn


def test_progress_uses_the_current_console_only() -> None:
    with progress("nobody", 3) as bar:  # no console: silent, still counts
        bar.update(3)
    assert current() is None and bar.done == 3
    out = io.StringIO()
    with use_console(Console(out, tty=False)) as console, progress("label t", 2) as bar:
        assert current() is console
        bar.update(2)
    assert current() is None
    assert out.getvalue().startswith("  label t: 2/2 docs (100%)")


def test_label_summary_table() -> None:
    teacher = SimpleNamespace(
        teacher="minilm-zero-shot", mode="embedding", rows_in=200, rows_resumed=150,
        rows_labeled=50, rows_with_errors=1, rows_truncated=2, prompt_tokens=1234,
        output_tokens=0, docs_per_s=9.333, cost=0.5, output="out/demo/votes/minilm-zero-shot",
    )  # fmt: skip
    text = format_label_summary(
        SimpleNamespace(output_uri="out/demo", taxonomy_version="v1", teachers=[teacher])
    )
    lines = text.splitlines()
    assert lines[0] == "output: out/demo  (taxonomy v1)"
    assert lines[2].split() == [
        "minilm-zero-shot", "embedding", "200", "150", "50", "1", "2", "1234", "0", "9.33",
        "0.5000",
    ]  # fmt: skip
    assert lines[3] == "votes: out/demo/votes/minilm-zero-shot"


def test_label_summary_keeps_large_figures_apart() -> None:
    teacher = SimpleNamespace(
        teacher="kw", mode="set", rows_in=10_000_000, rows_resumed=9_999_999, rows_labeled=1,
        rows_with_errors=0, rows_truncated=0, prompt_tokens=99_999_999_999, output_tokens=0,
        docs_per_s=88_467.99, cost=0.0, output="o/votes/kw",
    )  # fmt: skip
    text = format_label_summary(
        SimpleNamespace(output_uri="o", taxonomy_version="v1", teachers=[teacher])
    )
    assert text.splitlines()[2].split() == [
        "kw", "set", "10000000", "9999999", "1", "0", "0", "99999999999", "0", "88467.99", "0.0000",
    ]  # fmt: skip
