"""`python -m pii_redact.synth`: generate the training set (see the package docstring)."""
from ..cli import run
from .generator import main

raise SystemExit(run(main))  # a bad --output is one line, not a traceback
