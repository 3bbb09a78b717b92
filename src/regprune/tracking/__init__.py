from .console import ConsoleLogger
from .record import RunRecord, atomic_torch_save, atomic_write_bytes, provenance
from .sinks import Loggers, NullLogger
from .tensorboard_logger import TensorBoardLogger
from .wandb_logger import WandbLogger, read_offline_run

__all__ = ["ConsoleLogger", "Loggers", "NullLogger", "RunRecord", "TensorBoardLogger", "WandbLogger",
           "atomic_torch_save", "atomic_write_bytes", "provenance", "read_offline_run"]
