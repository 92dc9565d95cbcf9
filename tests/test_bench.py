"""The GPU benchmark script runs end to end on CPU with a tiny model (its numbers mean nothing here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pii_redact import chat
from pii_redact.config import DataConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def test_bench_train_measures_every_variant(tiny_model_dir, tmp_path):
    import bench_train

    from pii_redact import data

    raw = [{"prompt": chat.build_prompt(f"Ticket {k}: call Anna Weber on 030 {k:04d}."),
            "response": f"Ticket {k}: call [GIVENNAME_1] [SURNAME_1] on [TELEPHONENUM_1]."} for k in range(40)]
    raw += [{"prompt": chat.build_prompt(f"Note {k}: write to kim{k}@example.org"),
             "response": f"Note {k}: write to [EMAIL_1]"} for k in range(40)]
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    data.prepare(DataConfig(input=[str(tmp_path / "raw.json")], output_dir=str(tmp_path / "data"),
                            model=str(tiny_model_dir), val_fraction=0.1, test_fraction=0.2))
    out = tmp_path / "bench.json"
    assert bench_train.main(["--model", str(tiny_model_dir), "--data-dir", str(tmp_path / "data"),
                             "--variants", "suite,labspace", "--steps", "3", "--warmup", "1",
                             "--eval-samples", "4", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["train"]] == ["suite", "labspace"]
    for row in result["train"]:
        assert row["steps_timed"] == 3 and row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1
        assert row["epoch_tokens"] > 0 and row["epoch_s"] > 0
    assert result["train"][1]["batch_size"] == 8 and result["train"][1]["loss_on"] == "whole text"
    assert result["generation"][0]["engine"] == "transformers" and result["generation"][0]["samples"] == 4
    assert result["matmul_tflops"] > 0
