"""`python -m pii_redact.synth`: generate the training set (see the package docstring)."""
from .generator import main

raise SystemExit(main())
