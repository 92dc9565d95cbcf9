"""Stage 3, finetune.py: the recipe (`finetune`: plan -> data -> model -> trainer -> train -> save),
its pieces (`dataset`, `model`, `callbacks`, `device`), where the loss teaches the decision
(`decisions`: --decision-weight), making run directories safely (`runs`) and what a run saves
(`artifacts`); the command that also calibrates is `train_and_calibrate`."""
