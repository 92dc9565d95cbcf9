"""Stage 5, evaluate.py: predictions with their provenance (`evaluate`), scoring (`metrics`), the
reports (`report`), the baselines a model is measured against (`baselines`) and the privacy
dial's calibration (`calibrate`: `evaluate.py calibrate`)."""
