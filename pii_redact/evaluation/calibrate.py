"""Calibrating the privacy dial: which mask bias a run redacts with.

    python evaluate.py calibrate                         # the newest run, on data/calibration.jsonl
    python evaluate.py calibrate --model-dir outputs/my-run --limit 256

The run's model redacts the same samples once per mask bias: the calibration split, template
families that no other split has, so the dial is chosen on text the model never trained on (the
validation split where the data has none; never the test split),
with evaluate.py's defaults otherwise (faithful decoding, safety net, propagation), and each is
scored: leak rate, samples with a leak, entity precision/recall/F1, text fidelity. The rule that
picks the bias (`choose`) serves privacy first: the lowest leak rate whose text fidelity stays
within two points (0.02) of the fidelity at bias 0; among equal leak rates, the bias closest to 0.
A leak is worse than a masked ordinary word, and on unseen text the first step of the dial halves
the leaks for about that much fidelity (BENCHMARKS.md, "The default operating point"). The curve goes
to the run's `privacy.json` and `privacy.png`, the chosen bias to its run.json (`privacy`), where
evaluate.py and redact.py find it when --mask-bias is not given. finetune.py runs this after
training where a GPU trained (--calibrate).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import CalibrateConfig
from ..core.errors import UserError
from ..core.run_dir import RunDir

FIDELITY_BUDGET = 0.02  # text fidelity the dial may cost, against bias 0: two points
RULE = (f"the lowest leak rate whose text fidelity is at most {FIDELITY_BUDGET} below bias 0's; "
        "among equal leak rates the bias closest to 0")


def sweep(redactor, samples: list, biases: tuple[float, ...]) -> list[dict[str, Any]]:
    """One row of scores per bias: the same samples redacted with each (generation statistics included)."""
    from tqdm.auto import tqdm

    from ..inference.prediction import Prediction
    from . import metrics

    rows = []
    for bias in tqdm(biases, unit="bias", desc="calibrating", disable=None):
        dialled = redactor.configured(mask_bias=bias)
        # the Redactor's results are finished (safety net, propagation, numbering), as evaluate.py scores them
        predictions = [Prediction.redacted(r.index, samples[r.index], r)
                       for r in dialled.redact([s.source for s in samples], [s.prompt for s in samples])]
        scores = metrics.score(predictions)[0]
        rows.append({"mask_bias": bias, "leak_rate": scores["leak_rate"], "samples_with_leak": scores["samples_with_leak"],
                     "entity_precision": scores["entity"]["precision"], "entity_recall": scores["entity"]["recall"],
                     "entity_f1": scores["entity"]["f1"], "text_fidelity": scores["text_fidelity"],
                     "generate_s": round(dialled.stats.generate_s, 1)})
    return rows


def choose(curve: list[dict[str, Any]]) -> float:
    """The mask bias the rule picks (see the module docstring)."""
    base = next(row for row in curve if row["mask_bias"] == 0.0)
    allowed = [row for row in curve if row["text_fidelity"] >= base["text_fidelity"] - FIDELITY_BUDGET]
    return min(allowed, key=lambda row: (row["leak_rate"], abs(row["mask_bias"]), row["mask_bias"]))["mask_bias"]


def calibrate(run_dir: RunDir, model_dir: Path, data: Path, limit: int, biases: tuple[float, ...],
              batch_size: int) -> dict[str, Any]:
    """Sweep, choose, and write privacy.json, privacy.png and run.json's `privacy`; everything
    that could refuse (the data, the files written) is checked before the sweep."""
    from ..core.files import write_json
    from ..data.records import read_samples
    from ..inference.redactor import Redactor, Settings

    run = run_dir.read()  # a run, before anything slow
    data_sha256 = check_calibration_data(data, run)
    check_can_write_outputs(run_dir)
    samples = read_samples(data, limit)
    started = time.perf_counter()
    redactor = Redactor(model_dir, Settings(batch_size=batch_size))
    curve = sweep(redactor, samples, tuple(sorted(set(biases) | {0.0})))
    chosen = choose(curve)
    result = {"mask_bias": chosen, "rule": RULE, "data": str(data.resolve()), "data_sha256": data_sha256,
              "samples": len(samples), "seconds": round(time.perf_counter() - started, 1), "curve": curve}
    plot(curve, chosen, run_dir.privacy_plot)
    write_json(run_dir.privacy_file, result)
    recorded = ("mask_bias", "rule", "data", "data_sha256", "samples", "seconds")
    run_dir.write({**run, "privacy": {k: result[k] for k in recorded}})
    return result


def check_calibration_data(data: Path, run: dict[str, Any]) -> str:
    """The sha256 of --data, once it is known to be none of the run's held-out or training
    splits, by name or by content (a copy or a link under another name is the same text)."""
    from ..core.files import sha256_file
    from ..data.prepare import HELD_OUT

    digest = sha256_file(data)
    forbidden = forbidden_data(run)
    if data.name in HELD_OUT or data.resolve().name in HELD_OUT or digest in forbidden:
        what = forbidden.get(digest, f"a held-out split ({data.resolve().name})")
        raise UserError(f"--data {data} is {what}: a bias chosen on the text it is then scored on, or on "
                        "the text the model learned, flatters the score; calibrate on the calibration split (calibration.jsonl)")
    return digest


def forbidden_data(run: dict[str, Any]) -> dict[str, str]:
    """sha256 -> what it is, of the text calibration must not use: the run's training split and
    held-out splits as run.json recorded them, and the held-out splits now in its --data-dir."""
    from ..data.prepare import held_out_hashes

    recorded = run.get("data_sha256") if isinstance(run.get("data_sha256"), dict) else {}
    held_out = run.get("held_out_sha256") if isinstance(run.get("held_out_sha256"), dict) else {}
    forbidden = {digest: f"the run's training split ({name})" for name, digest in recorded.items() if name == "train.jsonl"}
    forbidden.update({digest: f"the run's held-out split ({name})" for name, digest in held_out.items()})
    data_dir = run["config"].get("data_dir")
    if isinstance(data_dir, str):
        forbidden.update({digest: f"the held-out split {Path(data_dir) / name}"
                          for name, digest in held_out_hashes(Path(data_dir)).items()})
    return forbidden


def check_can_write_outputs(run_dir: RunDir) -> None:
    """Every file calibrate writes into the run, checked before the sweep rather than after it."""
    from ..core.files import check_can_write

    for path in (run_dir.privacy_file, run_dir.privacy_plot, run_dir.run_file):
        check_can_write(path, "--model-dir")


def plot(curve: list[dict[str, Any]], chosen: float, path: Path) -> None:
    import matplotlib

    from ..core.files import atomic_write

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    biases = [row["mask_bias"] for row in curve]
    fig, leak_axis = plt.subplots(figsize=(7, 4))
    leak_axis.plot(biases, [row["leak_rate"] for row in curve], "o-", color="#c44e52", label="leak rate")
    leak_axis.plot(biases, [row["samples_with_leak"] for row in curve], "s--", color="#dd8452", label="samples with a leak")
    leak_axis.set_xlabel("mask bias (log-odds added to masking)")
    leak_axis.set_ylabel("leaks (lower is better)")
    fidelity_axis = leak_axis.twinx()
    fidelity_axis.plot(biases, [row["text_fidelity"] for row in curve], "^-", color="#4c72b0", label="text fidelity")
    fidelity_axis.set_ylabel("text fidelity")
    leak_axis.axvline(chosen, color="gray", linestyle=":", label=f"chosen: {chosen:g}")
    lines = leak_axis.get_legend_handles_labels()[0] + fidelity_axis.get_legend_handles_labels()[0]
    leak_axis.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:  # a failed write leaves the previous plot, never half a file
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def calibrate_command(config: CalibrateConfig) -> int:
    """`evaluate.py calibrate` (and finetune.py --calibrate): the run --model-dir names (else the
    newest in --runs-dir) calibrated on --data (else the calibration split), and its curve printed."""
    from ..core.files import input_file
    from ..data.prepare import calibration_split
    from ..models.loading import trained_model

    model_dir, run_dir = trained_model(config.model_dir, config.runs_dir, run_only=True)  # the bias is recorded in the run
    data = input_file(config.data or str(calibration_split("data")), "--data",
                      " (make the splits with prepare_data.py first)")
    result = calibrate(run_dir, model_dir, data, config.limit, config.biases, config.batch_size)
    for row in result["curve"]:
        mark = "  <- chosen" if row["mask_bias"] == result["mask_bias"] else ""
        print(f"mask bias {row['mask_bias']:>5g}: leak rate {row['leak_rate']:.4f}, samples with a leak "
              f"{row['samples_with_leak']:.3f}, entity F1 {row['entity_f1']:.4f}, fidelity {row['text_fidelity']:.4f}{mark}")
    print(f"chose mask bias {result['mask_bias']:g} ({result['samples']} samples, {result['seconds']:.0f} s): "
          f"{run_dir.privacy_file}, {run_dir.privacy_plot}")
    return 0
