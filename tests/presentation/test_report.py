"""The HTML report: every section, self-contained, sortable tables, a real browser renders it without errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.evaluation import evaluate_folder
from nnseg.presentation import write_report
from nnseg.presentation._report import SECTIONS

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _metrics(step: int) -> dict[str, object]:
    return {"epoch": step // 10 - 1, "step": step, "train_loss": 1.0 / step, "val_loss": -0.1 * step / 10,
            "pseudo_dice": 0.2 * step / 10, "pseudo_dice_per_class": [0.3, 0.1 * step / 10],
            "ema_pseudo_dice": 0.15 * step / 10, "lr": 0.01 - 0.001 * step / 10, "seconds_per_step": 0.5}  # fmt: skip


@pytest.fixture(scope="module")
def work(raw_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder with one run: run.json, metrics.jsonl, a validation folder with summary.json, timings.json."""
    root = tmp_path_factory.mktemp("work")
    run = root / "runs" / "nnUNetPlans__3d_fullres__test" / "fold_0"
    (run / "validation").mkdir(parents=True)
    spec = DatasetSpec.load(raw_dataset / "dataset.json")
    run_json = {"plan": {"patch_size": [8, 16, 16], "batch_size": 2, "spacing": [2.0, 1.0, 1.0],
                         "nnseg_configuration_name": "3d_fullres",
                         "nnseg_memory_report": {"estimate": 1.0e6, "budget": 5.0e8, "note": "tiny"}},
                "plan_name": "3d_fullres", "dataset_spec": spec.to_dict(), "config": {"seed": 0}}  # fmt: skip
    (run / "run.json").write_text(json.dumps(run_json))
    (run / "metrics.jsonl").write_text("".join(json.dumps(_metrics(s)) + "\n" for s in (10, 20, 30)))
    for case in ("case_000", "case_001"):
        shutil.copy(raw_dataset / "labelsTr" / f"{case}.nii.gz", run / "validation" / f"{case}.nii.gz")
    evaluate_folder(run / "validation", raw_dataset / "labelsTr", spec, allow_missing=True).save(
        run / "validation" / "summary.json"
    )
    (root / "workspace.json").write_text(json.dumps({"format_version": 1, "raw_dataset": str(raw_dataset)}))
    (root / "timings.json").write_text(json.dumps({"preprocess": 1.5}))
    (root / "best.json").write_text(json.dumps({"ranking": [{"name": "3d_fullres", "mean_dice": 0.9}]}))
    return root


def test_report_has_every_section_and_needs_no_network(work: Path, tmp_path: Path) -> None:
    page = write_report(work, tmp_path / "report.html").read_text()
    for kind in (*SECTIONS, "candidates"):
        assert f'<section class="{kind}">' in page
    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert page.count("data:image/png;base64,") >= 3  # curves and two worst-case overlays
    assert "Dice lesion" in page  # label names from dataset.json
    assert 'class="sortable"' in page
    assert "preprocess" in page


def test_report_of_a_run_folder_and_extra_evaluations(work: Path, tmp_path: Path) -> None:
    run = next((work / "runs").glob("*/fold_0"))
    page = write_report(run, tmp_path / "r.html", evaluations=[("test", run / "validation")]).read_text()
    assert page.count('<section class="run"') == 1
    assert page.count("<h4>test</h4>") == 1


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"report: .* is not a run folder \(no run.json\) nor a work folder"):
        write_report(tmp_path, tmp_path / "r.html")
    (tmp_path / "runs").mkdir()
    with pytest.raises(ConfigError, match=r"holds no training run yet"):
        write_report(tmp_path, tmp_path / "r.html")


def test_the_page_renders_in_a_real_browser(work: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.is_file():
        pytest.skip("no browser: install Debian's chromium (apt-get install -y chromium)")
    path = write_report(work, tmp_path / "report.html")
    errors: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(path.resolve().as_uri())
            for kind in (*SECTIONS, "candidates"):
                assert page.locator(f"section.{kind}").first.is_visible()
            table = page.locator("table.sortable").first
            first_case = table.locator("tbody tr td").first.inner_text()
            table.locator("th").first.click()
            table.locator("th").first.click()  # descending by case id
            assert table.locator("tbody tr td").first.inner_text() != first_case
        finally:
            browser.close()
    assert errors == []
