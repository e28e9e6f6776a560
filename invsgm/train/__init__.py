"""Training of score models and noise-conditional classifiers from YAML configs.

``train_score(config)`` / ``train_classifier(config)`` (a ``TrainConfig`` or a mapping) run one shared
loop (``loop.run``) with the DSM or the cross-entropy objective; ``load_config(path, overrides)``
reads a YAML file. The CLI form is ``invsgm train score|classifier CONFIG.yaml [--set k.sub=v] [--out DIR]``,
and the same command under ``torchrun --nproc_per_node N -m invsgm.cli train ...`` trains with DDP.
"""
from .config import TrainConfig, TrainingConfig, load_config, parse_overrides
from .loop import ClassifierObjective, ScoreObjective, TrainResult, TrainState, train_classifier, train_score

__all__ = ["TrainConfig", "TrainingConfig", "load_config", "parse_overrides", "train_score", "train_classifier",
           "TrainResult", "TrainState", "ScoreObjective", "ClassifierObjective"]
