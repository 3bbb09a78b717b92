"""Hydra's basic launcher and hydra-submitit-launcher's local and Slurm launchers, each ending a sweep with
regprune's report (``regprune.launchers``): where every run went, a failed job's cause first, exit 2."""

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

from regprune.launchers import Reporting


class SequentialLauncher(Reporting, BasicLauncher):
    """Jobs one after another in this process (``hydra/launcher=sequential``, the default for ``-m``)."""


class LocalSubmititLauncher(Reporting, LocalLauncher):
    """Jobs as parallel processes on this machine (``hydra/launcher=local``)."""


class SlurmSubmititLauncher(Reporting, SlurmLauncher):
    """Jobs on Slurm (``hydra/launcher=slurm``)."""
