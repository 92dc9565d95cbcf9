"""Stage 5, evaluate.py: predictions with their provenance (`evaluate`), scoring (`metrics`), the
reports (`report`) and the baselines a model is measured against (`baselines`)."""
