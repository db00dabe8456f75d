"""Training (chapter 4 onwards): ``Trainer`` and ``TrainConfig``, checkpoints that resume exactly,
several processes under ``torchrun``, and token streams too big for memory (chapter 9)."""
from .checkpoint import load_checkpoint, model_config_dict, resolve_checkpoint, save_checkpoint, unwrap
from .config import BatchFn, NonFiniteLossError, TrainConfig
from .distributed import DistInfo, all_reduce_mean, cleanup_distributed, dist_info, init_distributed
from .streams import Prepared, open_prepared, prepare_corpus
from .trainer import Trainer

__all__ = ["Trainer", "TrainConfig", "NonFiniteLossError", "BatchFn", "model_config_dict",
           "save_checkpoint", "load_checkpoint", "resolve_checkpoint", "unwrap",
           "DistInfo", "dist_info", "init_distributed", "cleanup_distributed", "all_reduce_mean",
           "Prepared", "prepare_corpus", "open_prepared"]
