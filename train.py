"""Train with a sparsity penalty, prune, fine-tune: `python train.py model=vgg19 dataset=cifar10 ...`
(the same as the installed `regprune-train` command)."""

from regprune.cli import train_main

if __name__ == "__main__":
    train_main()
