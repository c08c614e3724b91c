"""Training and evaluation of Uni-FineParser, experiments and the demo."""

from hmtools.engine.config import TrainConfig
from hmtools.engine.evaluate import EvalResult, evaluate
from hmtools.engine.train import RunResult, evaluate_run, train, train_all_sports

__all__ = [
    "EvalResult",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "evaluate_run",
    "train",
    "train_all_sports",
]
