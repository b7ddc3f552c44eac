"""report.html for a person: sections in order, lift, thresholds, lineage and timing tables,
self-contained; rendered by headless Chromium where it is installed (no Ray)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labelmill.evaluation import add_lift, build_metrics_document, gold_matrix, score_system
from labelmill.report import render_report
from labelmill.report_sections import teachers_from_document

NAMES = ["a", "b"]
GOLD = [["a"], ["b"], ["a", "b"], []]
STRONG = [[0.9, 0.45], [0.6, 0.4], [0.8, 0.7], [0.1, 0.2]]
WEAK = [[0.2, 0.6], [0.7, 0.1], [0.3, 0.4], [0.6, 0.5]]
LINEAGE = {
    "aggregate": {
        "method": "dawid_skene",
        "labels_uri": "out/x/aggregate/labels",
        "summary": {"teachers": ["strong", "weak"], "n_docs": 4, "teacher_votes": {"weak": 3}},
    },
    "student": {
        "model_dir": "out/x/student",
        "model_version": "tax1-abc",
        "lineage": {
            "backbone": "all-minilm-l6-v2",
            "training_rows": 179,
            "dev_rows": 21,
            "epochs_run": 4,
            "best_epoch": 2,
            "aggregate": {
                "teacher_lineage": [
                    {"teacher": "weak", "model": "m-weak", "mode": "set", "prompt_hash": "h1"}
                ]
            },
        },
    },
    "evaluate": {"gold_source": "corpus column 'tags'", "gold_seed_fraction": 0.2},
}
TEACHERS = [
    {
        "teacher": "strong", "model": "m-strong", "mode": "embedding", "prompt_hash": "8b58f7b6",
        "taxonomy_version": "tax1", "rows": 200, "errors": 0, "prompt_tokens": 21605,
        "output_tokens": 0, "cost": None,
    },
    {
        "teacher": "weak", "model": "m-weak", "mode": "set", "prompt_hash": "59309cb8",
        "taxonomy_version": "tax1", "rows": 200, "errors": 20, "prompt_tokens": 104581,
        "output_tokens": 3260, "cost": 0.1111,
    },
]  # fmt: skip
TIMINGS = [{"stage": "label", "seconds": 275.0}, {"stage": "distill", "seconds": 201.5}]


def document() -> dict:
    y = gold_matrix(GOLD, NAMES)
    systems = {
        "strong": score_system("teacher", y, STRONG, 0.5, NAMES, n_bins=2),
        "weak": score_system("teacher", y, WEAK, [0.55, 0.45], NAMES, n_bins=2),
        "student": score_system("student", y, STRONG, 0.4, NAMES, n_bins=2),
    }
    return add_lift(build_metrics_document(NAMES, "tax1", 4, systems, LINEAGE, "2026-01-01"))


class Page(HTMLParser):
    """Headings, tables (rows of cell texts, by class), and every src/href attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._heading: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "h2":
            self._heading = ""
        elif tag == "table":
            self._table = values.get("class") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading is not None:
            self.headings.append(self._heading)
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading += data
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def test_report_sections_lift_lineage_and_timings() -> None:
    doc = document()
    page = parse(render_report(doc, teachers=TEACHERS, timings=TIMINGS))
    assert page.headings == ["Summary", "Per-label F1", "Calibration", "Lineage", "Stage timings"]
    summary = page.tables["summary"]
    assert summary[0][:6] == ["system", "kind", "micro-F1", "macro-F1", "micro lift", "macro lift"]
    best = doc["best_teacher"]
    rows = {row[0]: row for row in summary[1:]}
    assert rows[best][4] == "+0.000"  # the best teacher's own lift
    student_lift = doc["systems"]["student"]["lift"]["micro_f1"]
    assert rows["student"][4] == f"{student_lift:+.3f}"
    per_label = page.tables["per-label"]
    assert per_label[0][1:3] == ["strong F1 (lift)", "threshold"]
    assert [row[0] for row in per_label[1:]] == NAMES
    assert per_label[1][4] == "0.550" and per_label[2][4] == "0.450"  # weak's thresholds
    lineage = page.tables["lineage"]
    assert lineage[0] == [
        "teacher", "model", "mode", "prompt hash", "taxonomy version", "rows", "errors",
        "tokens in", "tokens out", "cost",
    ]  # fmt: skip
    assert lineage[2] == [
        "weak", "m-weak", "set", "59309cb8", "tax1", "200", "20", "104581", "3260", "0.1111"
    ]  # fmt: skip
    assert lineage[1][-1] == "-"  # no price: no cost
    facts = {row[0]: row[1] for row in page.tables["pipeline"]}
    assert facts["aggregate method"] == "dawid_skene"
    assert facts["student train / dev rows"] == "179 / 21"
    assert facts["student epochs run (best; 0: the linear probe)"] == "4 (2)"
    assert page.tables["timings"][1:] == [
        ["label", "275.0"],
        ["distill", "201.5"],
        ["total", "476.5"],
    ]
    # self-contained: every image inline, nothing fetched, no script
    assert page.links and all(link.startswith("data:image/png;base64,") for link in page.links)
    assert "script" not in page.tags and "link" not in page.tags


def test_report_without_run_figures_falls_back_to_the_documents_lineage() -> None:
    doc = document()
    rows = teachers_from_document(doc)
    assert rows == [
        {
            "teacher": "weak",
            "model": "m-weak",
            "mode": "set",
            "prompt_hash": "h1",
            "taxonomy_version": "tax1",
            "rows": 3,
        }
    ]
    page = parse(render_report(doc))
    assert page.tables["lineage"][1] == [
        "weak", "m-weak", "set", "h1", "tax1", "3", "-", "-", "-", "-"
    ]  # fmt: skip
    assert "timings" not in page.tables  # a sentence says labelmill run records them
    empty = parse(render_report({**doc, "lineage": {}}))
    assert empty.tables["lineage"][1] == ["no teacher lineage recorded"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_chromium_renders_the_report_without_errors(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_report(document(), TEACHERS, TIMINGS), encoding="utf-8")
    result = subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000",
            "--dump-dom", path.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    dom = parse(result.stdout)
    assert dom.headings == ["Summary", "Per-label F1", "Calibration", "Lineage", "Stage timings"]
    assert len(dom.tables["lineage"]) == 3
    for problem in ("Uncaught", "Failed to load resource", "ERR_FILE_NOT_FOUND", "Not allowed"):
        assert problem not in result.stderr


def test_report_says_in_one_sentence_whether_the_loop_beat_seed_only() -> None:
    y = gold_matrix(GOLD, NAMES)
    systems = {
        "strong": score_system("teacher", y, STRONG, 0.5, NAMES, n_bins=2),  # micro-F1 6/8
        "seed-only": score_system("baseline", y, WEAK, 0.5, NAMES, n_bins=2),  # every cut wrong
        "student": score_system("student", y, STRONG, 0.4, NAMES, n_bins=2),  # 8/10
    }
    baseline = {"backbone": "all-minilm-l6-v2", "C": 1.0, "seed_rows": 44, "threshold_folds": 5}
    lineage = {**LINEAGE, "seed_baseline": baseline}
    doc = add_lift(build_metrics_document(NAMES, "tax1", 4, systems, lineage, "2026-01-01"))
    html = render_report(doc)
    sentences = re.findall(r"<p class='verdict'><strong>(.*?)</strong></p>", html)
    assert sentences == [
        "The loop (its student, micro-F1 0.800) beat both seed-only (0.000) and the best "
        "teacher, strong (0.750)."
    ]
    page = parse(html)
    rows = {row[0]: row for row in page.tables["summary"][1:]}
    assert rows["seed-only"][:5] == ["seed-only", "baseline", "0.000", "0.000", "-0.750"]
    assert doc["best_teacher"] == "strong"  # the baseline is a yardstick, not a teacher
    facts = {row[0]: row[1] for row in page.tables["pipeline"]}
    assert facts["seed-only baseline"] == (
        "logistic regression per label (C=1.0, chosen on the seed) on all-minilm-l6-v2 "
        "embeddings of 44 gold-seed rows; thresholds on 5-fold out-of-fold probabilities"
    )
    assert "seed-only baseline" not in {
        row[0] for row in parse(render_report(document())).tables["pipeline"]
    }  # no baseline in the lineage: no row


def test_report_warns_when_the_student_was_below_its_aggregate_on_dev_gold() -> None:
    def page_with(record: dict) -> str:
        student = {**LINEAGE["student"], "lineage": {**LINEAGE["student"]["lineage"], **record}}
        return render_report({**document(), "lineage": {**LINEAGE, "student": student}})

    below = {"trustworthy": False, "dev_micro_f1": 0.31, "aggregate_dev_micro_f1": 0.42}
    html = page_with(below)
    assert re.findall(r"<p class='warning'>.*?</p>", html) == [
        "<p class='warning'><strong>Warning:</strong> at distill time the student was below "
        "its own aggregate on the dev split's gold rows (micro-F1 0.310 vs 0.420): check the "
        "figures below before deploying it.</p>"
    ]
    facts = {row[0]: row[1] for row in parse(html).tables["pipeline"]}
    assert facts["student / aggregate micro-F1 on dev gold"] == "0.310 / 0.420"
    above = {"trustworthy": True, "dev_micro_f1": 0.5, "aggregate_dev_micro_f1": 0.42}
    assert "class='warning'" not in page_with(above)
    assert "class='warning'" not in render_report(document())  # older exports: no record
