"""prepare_data.py: every kind of bad input is caught, counted or refused with a clear message,
and the splits are deterministic and leak-free."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pii_redact import cli
from pii_redact.core import chat, labels
from pii_redact.core.errors import UserError
from pii_redact.data import prepare, records

ROOT = Path(__file__).resolve().parent.parent


def pair(source: str, redacted: str) -> dict[str, str]:
    return {"prompt": chat.build_prompt(source), "response": redacted}


GOOD = pair("Call Anna at 555-0100 tomorrow.", "Call [GIVENNAME_1] at [TELEPHONENUM_1] tomorrow.")


def templated(n_templates: int, variants: int) -> list[dict[str, str]]:
    """n_templates masked texts, each filled with `variants` different PII values (near-duplicates)."""
    names = ["Anna", "Jürgen", "Marie", "Luca", "Sofia", "Pieter"]
    return [
        pair(f"Ticket {t}: please email {names[v]} at {names[v].lower()}{t}@example.com today.",
             f"Ticket {t}: please email [GIVENNAME_1] at [EMAIL_1] today.")
        for t in range(n_templates) for v in range(variants)
    ]


def write_json(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


@pytest.fixture
def run_prepare(tmp_path, tiny_model_dir, capsys):
    """Run prepare_data's main in-process: (exit code, stderr, report or None)."""
    def run(*inputs: Path, extra: tuple[str, ...] = ()) -> tuple[int, str, dict | None]:
        out = tmp_path / "out"
        argv = [a for p in inputs for a in ("--input", str(p))]
        argv += ["--model", str(tiny_model_dir), "--output-dir", str(out), *extra]
        code = cli.run(prepare.main, argv)
        report = out / "report.json"
        return code, capsys.readouterr().err, json.loads(report.read_text()) if report.exists() else None
    return run


def split_records(out: Path, split: str) -> list[dict]:
    path = out / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_writes_conversational_splits_and_report(tmp_path, run_prepare):
    records = templated(40, 3)
    code, err, report = run_prepare(write_json(tmp_path / "in.json", records),
                                    extra=("--val-fraction", "0.2", "--test-fraction", "0.2"))
    assert code == 0, err
    out = tmp_path / "out"
    lines = {s: split_records(out, s) for s in prepare.SPLITS}
    assert sum(map(len, lines.values())) == len(records) == report["counts"]["records_out"]
    assert all(lines[s] for s in ("train", "val", "test")) and not lines["unseen"], "every split gets records"

    line = lines["train"][0]
    original = records[line["origin"]["index"]]
    assert line["messages"] == chat.to_messages(original["prompt"], original["response"])
    assert line["source"] == chat.source_from_prompt(original["prompt"])
    assert line["origin"]["file"].endswith("in.json")
    assert line["labels"] == {"EMAIL": 1, "GIVENNAME": 1}
    assert line["language"] == "en"
    assert line["num_tokens"] > 0

    assert {"counts", "drops", "splits", "tokens", "longest", "model", "tokenizer", "config",
            "inputs", "outputs", "seconds"} <= report.keys()
    assert report["drops"] == {}
    assert report["splits"]["train"]["labels"]["EMAIL"] == len(lines["train"])
    assert "SURNAME" in report["splits"]["test"]["missing_labels"]
    assert report["tokens"]["max"] == report["longest"]["num_tokens"]
    for s in prepare.SPLITS:
        assert len(report["outputs"][s]["sha256"]) == 64


def test_no_test_template_occurs_in_train(tmp_path, run_prepare):
    code, err, _ = run_prepare(write_json(tmp_path / "in.json", templated(60, 4)),
                               extra=("--val-fraction", "0.2", "--test-fraction", "0.2"))
    assert code == 0, err
    out = tmp_path / "out"
    masked = {s: {labels.renumber(r["messages"][1]["content"]) for r in split_records(out, s)}
              for s in prepare.SPLITS}
    assert masked["test"] and masked["train"]
    assert not masked["test"] & masked["train"]
    assert not masked["val"] & masked["train"]
    assert not masked["test"] & masked["val"]


def test_splits_are_deterministic_for_a_seed(tmp_path, run_prepare):
    source = write_json(tmp_path / "in.json", templated(60, 2))
    digests = []
    for seed in ("1", "1", "2"):
        code, err, report = run_prepare(source, extra=("--seed", seed, "--test-fraction", "0.2"))
        assert code == 0, err
        digests.append({s: o["sha256"] for s, o in report["outputs"].items()})
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


BAD = {
    "missing_field": {"prompt": GOOD["prompt"]},
    "wrong_type": {"prompt": GOOD["prompt"], "response": 42},
    "empty_field": {"prompt": GOOD["prompt"], "response": "  "},
    "no_text_marker": {"prompt": "Redact this: Call Anna.", "response": "Redact this: Call [GIVENNAME_1]."},
    "unknown_label": pair("Call Anna at 555-0100.", "Call [PERSON] at [TELEPHONENUM_1]."),
    "inconsistent_response": pair("Call Anna at 555-0100.", "Phone [GIVENNAME_1] at [TELEPHONENUM_1]."),
}


def test_invalid_records_are_dropped_and_counted_by_reason(tmp_path, run_prepare):
    records = [GOOD] + list(BAD.values()) + [["not", "an", "object"]]
    code, err, report = run_prepare(write_json(tmp_path / "in.json", records), extra=("--on-error", "drop"))
    assert code == 0, err
    drops = report["drops"]
    for i, reason in enumerate(BAD, start=1):
        assert drops[reason]["examples"][0]["index"] == i, reason
    assert drops["wrong_type"]["count"] == 2  # the response of 42 and the list
    assert report["counts"] == {"records_in": 8, "records_out": 1, "dropped": 7,
                                "train_records": 1, "val_records": 0, "test_records": 0, "unseen_records": 0,
                                "calibration_records": 0}


@pytest.mark.parametrize("reason", list(BAD))
def test_invalid_record_fails_by_default_with_a_clear_message(tmp_path, run_prepare, reason):
    code, err, report = run_prepare(write_json(tmp_path / "in.json", [GOOD, BAD[reason]]))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "in.json record 1" in err and reason in err and "--on-error drop" in err
    assert report is None and not (tmp_path / "out" / "train.jsonl").exists()


def test_malformed_jsonl_line_names_file_line_and_column(tmp_path, run_prepare):
    path = write_jsonl(tmp_path / "in.jsonl", [GOOD, '{"prompt": "x", "response" "y"}', templated(1, 1)[0]])
    code, err, _ = run_prepare(path)
    assert code == 2 and "in.jsonl:2:28: invalid JSON" in err

    code, err, report = run_prepare(path, extra=("--on-error", "drop"))
    assert code == 0, err
    assert report["drops"]["invalid_json"] == {
        "count": 1, "examples": [{"file": str(path), "index": 1, "detail": "invalid JSON: Expecting ':' delimiter",
                                  "where": f"{path}:2:28"}]}


def test_too_long_samples_are_dropped_never_truncated(tmp_path, run_prepare, tiny_tokenizer):
    long = pair("Call Anna at 555-0100. " + "Nothing to see here. " * 40, "Call [GIVENNAME_1] at [TELEPHONENUM_1]. " + "Nothing to see here. " * 40)
    short_len = len(chat.encode_examples(tiny_tokenizer, [(GOOD["prompt"], GOOD["response"])])[0]["input_ids"])
    code, err, report = run_prepare(write_json(tmp_path / "in.json", [GOOD, long]),
                                    extra=("--max-seq-length", str(short_len)))
    assert code == 0, err  # over-long is a filter, not an error, even under --on-error fail
    assert report["drops"]["too_long"]["count"] == 1
    assert report["drops"]["too_long"]["examples"][0]["index"] == 1
    assert report["tokens"]["max"] == short_len
    [kept] = [r for s in prepare.SPLITS for r in split_records(tmp_path / "out", s)]
    assert kept["messages"][1]["content"] == GOOD["response"]


def test_duplicates_across_files_are_dropped_once(tmp_path, run_prepare):
    records = templated(30, 2)
    conflicting = records[0] | {"response": "Ticket 0: please email Anna at [EMAIL_1] today."}
    first = write_json(tmp_path / "a.json", records)
    second = write_jsonl(tmp_path / "b.jsonl", records[:10] + [conflicting])
    code, err, report = run_prepare(first, second, extra=("--test-fraction", "0.3"))
    assert code == 0, err
    assert report["drops"]["duplicate"]["count"] == 10
    assert report["drops"]["conflicting_response"]["count"] == 1
    assert report["counts"]["records_out"] == len(records)
    prompts = [r["messages"][0]["content"] for s in prepare.SPLITS for r in split_records(tmp_path / "out", s)]
    assert len(prompts) == len(set(prompts))


def test_ai4privacy_rows_get_the_seed_instruction(tmp_path, run_prepare):
    row = {"source_text": "Ruf Jürgen unter 030 1234567 an.", "masked_text": "Ruf [GIVENNAME_1] unter [TELEPHONENUM_1] an.",
           "language": "de", "privacy_mask": []}
    code, err, report = run_prepare(write_jsonl(tmp_path / "rows.jsonl", [row]), extra=("--test-fraction", "0", "--val-fraction", "0"))
    assert code == 0, err
    [line] = split_records(tmp_path / "out", "train")
    assert line["messages"][0]["content"] == chat.build_prompt(row["source_text"])
    assert line["language"] == "de" and line["source"] == row["source_text"]


def test_guess_language():
    from pii_redact.data.language import guess_language

    assert guess_language("Bitte senden Sie die Rechnung an die neue Adresse und nicht an mich.") == "de"
    assert guess_language("Merci de nous envoyer la facture avec votre numéro.") == "fr"
    assert guess_language("12345 67890") == "unknown"


def test_encode_examples_batch_equals_one_by_one(tiny_tokenizer):
    pairs = [(r["prompt"], r["response"]) for r in [GOOD, *templated(3, 1)]]
    assert chat.encode_examples(tiny_tokenizer, pairs) == [chat.encode_examples(tiny_tokenizer, [p])[0] for p in pairs]


def test_read_samples_names_the_bad_line(tmp_path):
    path = write_jsonl(tmp_path / "split.jsonl", [{"a": 1}, "{oops"])
    with pytest.raises(UserError, match=r"split\.jsonl:1: not a prepared sample"):
        records.read_samples(path, prepared=True)
    path = write_jsonl(tmp_path / "split2.jsonl", ["{oops"])
    with pytest.raises(UserError, match=r"split2\.jsonl:1:2: invalid JSON"):
        records.read_samples(path)


def script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # sys.executable: the venv running the tests, whatever it is called on this machine
    return subprocess.run([sys.executable, str(ROOT / "prepare_data.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_script_malformed_json_list_is_fatal_without_traceback(tmp_path, tiny_model_dir):
    (tmp_path / "pii_redaction_train.json").write_text('[\n  {"prompt": "a",\n   "response": }\n]\n')
    result = script("--model", str(tiny_model_dir), "--on-error", "drop", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: pii_redaction_train.json:3:16: invalid JSON")


def test_script_unloadable_model_says_what_to_pass(tmp_path):
    write_json(tmp_path / "pii_redaction_train.json", [GOOD])
    result = script("--model", "no-such-org/no-such-model", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot download 'no-such-org/no-such-model' (HF_HUB_OFFLINE is set)" in result.stderr
    assert "--model pypi:gemma-3-270m" in result.stderr and "a local model directory" in result.stderr


def test_exact_spans_are_kept_and_checked(tmp_path, run_prepare):
    source = "Ship to Via Giuseppe Verdi 12 today."
    good = {**pair(source, "Ship to [STREET_1] [BUILDINGNUM_1] today."), "entities": [[8, 26, "STREET"], [27, 29, "BUILDINGNUM"]]}
    row = {"source_text": "María José Pérez", "masked_text": "[GIVENNAME_1] [SURNAME_1]",
           "privacy_mask": [{"value": "María José", "start": 0, "end": 10, "label": "GIVENNAME"},
                            {"value": "Pérez", "start": 11, "end": 16, "label": "SURNAME"}]}
    bad = [{**good, "entities": [[8, 25, "STREET"], [27, 29, "BUILDINGNUM"]]},   # not what the response masks
           {**good, "entities": [[8, 26, "STREET"], [20, 29, "BUILDINGNUM"]]},   # overlapping
           {**good, "entities": [[8, 26, "STREET"], [27, 29, "HOUSE"]]},          # unknown label
           {**good, "entities": "8-26"}]
    code, err, report = run_prepare(write_jsonl(tmp_path / "in.jsonl", [good, row, *bad]),
                                    extra=("--on-error", "drop", "--val-fraction", "0", "--test-fraction", "0"))
    assert code == 0, err
    assert report["drops"]["bad_entities"]["count"] == 4
    lines = split_records(tmp_path / "out", "train")
    assert [line["entities"] for line in lines] == [good["entities"], [[0, 10, "GIVENNAME"], [11, 16, "SURNAME"]]]
    # read back as samples, the spans are the references' entities
    [first, second] = records.read_samples(tmp_path / "out" / "train.jsonl", prepared=True)
    assert [e.value for e in second.entities] == ["María José", "Pérez"]
    assert [e.value for e in first.entities] == ["Via Giuseppe Verdi", "12"]


def test_held_out_genres_and_template_families_go_to_the_unseen_split(tmp_path, run_prepare):
    records = [{**r, "genre": genre, "template": f"en/{genre}/{k % 7}"}
               for k, r in enumerate(templated(60, 2)) for genre in [("news", "review", "cv")[k % 3]]]
    code, err, report = run_prepare(write_json(tmp_path / "in.json", records),
                                    extra=("--holdout-genres", "review", "--holdout-templates", "0.3"))
    assert code == 0, err
    out = tmp_path / "out"
    unseen = split_records(out, "unseen")
    seen = [r for s in ("train", "val", "test", "calibration") for r in split_records(out, s)]
    assert unseen and seen and len(unseen) + len(seen) == len(records)
    assert all(r["genre"] == "review" for r in unseen if r["genre"] == "review")
    assert not any(r["genre"] == "review" for r in seen)  # the whole genre is held out
    unseen_templates = {r["template"] for r in unseen if r["genre"] != "review"}
    assert unseen_templates and not unseen_templates & {r["template"] for r in seen}  # whole families
    assert report["splits"]["unseen"]["genres"]["review"] == sum(r["genre"] == "review" for r in records)


def test_the_calibration_split_is_whole_template_families_no_other_split_has(tmp_path, run_prepare):
    """calibration.jsonl is where the privacy dial is chosen: text the model never trained on, so
    it shares no template family with train, val, test or unseen (drawn first, by family)."""
    records = [{**r, "template": f"en/note/{k % 40}"} for k, r in enumerate(templated(200, 2))]
    code, err, report = run_prepare(write_json(tmp_path / "in.json", records),
                                    extra=("--calibration-templates", "0.2", "--holdout-templates", "0.2"))
    assert code == 0, err
    out = tmp_path / "out"
    families = {s: {r["template"] for r in split_records(out, s)} for s in prepare.SPLITS}
    assert families["calibration"] and families["unseen"] and families["train"]
    for other in ("train", "val", "test", "unseen"):
        assert not families["calibration"] & families[other], other
    assert report["counts"]["calibration_records"] == len(split_records(out, "calibration"))
    # the default keeps a fiftieth of the families; data without template families has none
    code, err, report = run_prepare(write_json(tmp_path / "plain.json", templated(40, 3)))
    assert code == 0 and report["counts"]["calibration_records"] == 0, err
