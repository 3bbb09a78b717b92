"""Train with a sparsity penalty, prune, fine-tune: `python train.py model=vgg19 dataset=cifar10 ...`."""

import hydra
from omegaconf import DictConfig

from regprune.cli import entry, execute


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    execute(cfg)


if __name__ == "__main__":
    entry(main)
