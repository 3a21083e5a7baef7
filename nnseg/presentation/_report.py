"""``write_report``: one self-contained HTML page about a run or a work folder.

Sections per run: the plan (configuration and memory report), the training curves, each evaluation table
per case and label (sortable), the worst cases' overlays, and the timings; for a work folder also the
ranked candidates of ``best.json``. Pictures are embedded as data URIs, so the file can be mailed or
archived on its own and opens without network access.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_text
from nnseg.errors import NnsegError
from nnseg.presentation._charts import training_curves_png
from nnseg.presentation._html import image_tag, page, table
from nnseg.presentation._report_data import Evaluation, ReportSource, RunData, load_evaluation, load_source

__all__ = ["SECTIONS", "write_report"]

logger = logging.getLogger(__name__)

SECTIONS = ("plan", "curves", "evaluation", "worst", "timings")
"""CSS classes of the sections every run gets (``candidates`` is added for a work folder with best.json)."""
WORST_CASES = 3
PathLike = str | os.PathLike[str]


def _label_names(run: RunData) -> dict[str, str]:
    labels = run.run.get("dataset_spec", {}).get("labels", {})
    return {str(v): str(k) for k, v in labels.items() if not isinstance(v, list) and int(v) > 0}


def _section(kind: str, title: str, body: str) -> str:
    return f'<section class="{kind}"><h3>{html.escape(title)}</h3>{body}</section>'


def _plan_section(run: RunData) -> str:
    plan, config = run.run.get("plan", {}), run.run.get("config", {})
    arch = plan.get("architecture", {}).get("arch_kwargs", {})
    rows = [
        ("configuration", plan.get("nnseg_configuration_name", run.run.get("plan_name", ""))),
        ("patch size", " x ".join(str(v) for v in plan.get("patch_size", []))),
        ("batch size", plan.get("batch_size", "")),
        ("spacing (mm)", ", ".join(f"{float(v):.3g}" for v in plan.get("spacing", []))),
        ("normalisation", ", ".join(plan.get("normalization_schemes", []))),
        ("network", str(plan.get("architecture", {}).get("network_class_name", "")).rsplit(".", 1)[-1]),
        ("stages", arch.get("n_stages", "")),
        ("features per stage", ", ".join(str(v) for v in arch.get("features_per_stage", []))),
        ("steps", f"{config.get('iterations_per_epoch', '?')} x {config.get('num_epochs', '?')} epochs"),
        ("initial learning rate", config.get("initial_lr", "")),
        ("seed", config.get("seed", "")),
    ]
    body = table(["setting", "value"], rows)
    memory = plan.get("nnseg_memory_report")
    if isinstance(memory, dict):
        memory_rows = [(k, v) for k, v in memory.items() if k != "note"]
        body += "<h4>memory report</h4>" + table(["figure", "value"], memory_rows)
        if memory.get("note"):
            body += f'<p class="note">{html.escape(str(memory["note"]))}</p>'
    return _section("plan", "plan", body)


def _curves_section(run: RunData) -> str:
    if not run.metrics:
        return _section("curves", "training curves", '<p class="note">no metrics.jsonl yet</p>')
    png = training_curves_png(run.metrics, _label_names(run))
    last = run.metrics[-1]
    note = (f'<p class="note">last epoch: step {last.get("step")}, EMA pseudo-Dice '
            f'{float(last.get("ema_pseudo_dice", math.nan)):.4f}</p>')  # fmt: skip
    return _section("curves", "training curves", image_tag(png, "training curves") + note)


def _evaluation_table(evaluation: Evaluation, names: Mapping[str, str]) -> str:
    keys = evaluation.label_keys()
    header = ["case", *(f"Dice {names.get(k, k)}" for k in keys), "mean Dice"]
    rows = []
    for case_id, dice, _, _ in evaluation.cases():
        values = [dice.get(k, math.nan) for k in keys]
        finite = [v for v in values if not math.isnan(v)]
        rows.append([case_id, *values, sum(finite) / len(finite) if finite else math.nan])
    means = [float(evaluation.data.get("mean", {}).get(k, {}).get("Dice", math.nan)) for k in keys]
    caption = ", ".join(f"{names.get(k, k)} {m:.4f}" for k, m in zip(keys, means))
    return (f"<h4>{html.escape(evaluation.title)}</h4><p>mean Dice per label: {html.escape(caption)} "
            f'<span class="note">({html.escape(str(evaluation.path))}; click a header to sort)</span></p>'
            + table(header, rows, sortable=True))  # fmt: skip


def _image_dir_for(reference: Path) -> Path:
    """``.../labelsTr/x`` -> ``.../imagesTr`` (and labelsTs -> imagesTs): where a raw case's images are."""
    folder = reference.parent
    suffix = folder.name[len("labels") :] if folder.name.startswith("labels") else "Tr"
    return folder.parent / f"images{suffix}"


def _worst_section(run: RunData) -> str:
    from nnseg.dataset import DatasetSpec
    from nnseg.presentation._overlay import find_image_file, overlay_case

    parts, names = [], _label_names(run)
    spec = DatasetSpec.from_dict(run.run["dataset_spec"]) if "dataset_spec" in run.run else None
    for evaluation in run.evaluations:
        for case_id, dice, prediction, reference in evaluation.worst(WORST_CASES):
            try:
                image = find_image_file(_image_dir_for(reference), case_id, 0)
                picture = overlay_case(image, prediction, reference_file=reference, spec=spec, case_id=case_id)
            except (NnsegError, OSError) as err:  # a moved raw dataset must not cost the whole report
                parts.append(f'<p class="note">{html.escape(case_id)}: no overlay ({html.escape(str(err))})</p>')
                continue
            text = ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in dice.items())
            parts.append(f"<figure>{image_tag(picture.png(), case_id)}<figcaption>{html.escape(evaluation.title)}: "
                         f"{html.escape(case_id)} (Dice {html.escape(text)})</figcaption></figure>")  # fmt: skip
    body = "".join(parts) or '<p class="note">no evaluation with per-case results yet</p>'
    return _section("worst", f"worst cases (lowest mean Dice, up to {WORST_CASES} per evaluation)", body)


def _timings_section(run: RunData, timings: Mapping[str, float]) -> str:
    rows: list[tuple[str, Any]] = [(stage, seconds) for stage, seconds in timings.items()]
    steps = int(run.metrics[-1].get("step", 0)) if run.metrics else 0
    if steps:
        seconds = run.training_seconds()
        rows.append((f"training ({steps} steps, from metrics.jsonl)", seconds))
        rows.append(("seconds per training step (mean)", seconds / steps))
    body = table(["stage", "seconds"], rows) if rows else '<p class="note">no timings recorded</p>'
    return _section("timings", "timings", body)


def _run_section(run: RunData, timings: Mapping[str, float], index: int) -> str:
    names = _label_names(run)
    evaluations = "".join(_evaluation_table(e, names) for e in run.evaluations)
    evaluation_body = evaluations or '<p class="note">no evaluation yet (final validation off)</p>'
    return (
        f'<section class="run" id="run-{index}"><h2>run {html.escape(run.name)}</h2>'
        f'<p class="note">{html.escape(str(run.path))}</p>'
        + _plan_section(run) + _curves_section(run) + _section("evaluation", "evaluation", evaluation_body)
        + _worst_section(run) + _timings_section(run, timings) + "</section>"
    )  # fmt: skip


def _candidates_section(best: Mapping[str, Any]) -> str:
    ranked = next((v for v in best.values() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
    if ranked is not None:
        header = sorted({k for entry in ranked for k in entry}, key=lambda k: (k != "name", k))
        rows = [[e.get(k, "") if isinstance(e.get(k), int | float) else json.dumps(e.get(k, "")).strip('"')
                 for k in header] for e in ranked]  # fmt: skip
        body = table(["rank", *header], [[i + 1, *row] for i, row in enumerate(rows)], sortable=True)
    else:
        body = ""
    body += f"<pre>{html.escape(json.dumps(best, indent=2))}</pre>"
    return f'<section class="candidates"><h2>find-best candidates (best.json)</h2>{body}</section>'


def write_report(folder: PathLike, output: PathLike, *, evaluations: Sequence[tuple[str, PathLike]] = ()) -> Path:
    """Write the HTML report of a run folder or a work folder and return its path.

    Args:
        folder: A run folder (``run.json``) or a work folder (``workspace.json`` or ``runs/``).
        output: The HTML file to write (atomically).
        evaluations: Extra ``(title, summary.json or its folder)`` shown with the (first) run, e.g. the
            evaluation of test-set predictions.

    Returns:
        ``output`` as a Path.

    Raises:
        ConfigError: If ``folder`` is not a run or work folder, or a summary cannot be read.
    """
    source: ReportSource = load_source(folder)
    runs = list(source.runs)
    extra = [load_evaluation(path, title) for title, path in evaluations]
    if extra:
        first = runs[0]
        runs[0] = RunData(first.path, first.name, first.run, first.metrics, [*first.evaluations, *extra])
    nav = "".join(f'<a href="#run-{i}">{html.escape(r.name)}</a>' for i, r in enumerate(runs))
    body = f"<nav>{nav}</nav>" + "".join(_run_section(r, source.timings, i) for i, r in enumerate(runs))
    if source.best is not None:
        body += _candidates_section(source.best)
    output = Path(output)
    atomic_write_text(output, page(f"nnseg report: {source.path.resolve().name}", body))
    logger.info("wrote the report of %d run(s) to %s", len(runs), output)
    return output
