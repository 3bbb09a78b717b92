from .base import BNRegularizer, NoRegularizer, Regularizer
from .exclusive import HGL, L12, GroupLHalf
from .greg import GrowingL2
from .group_lasso import GroupLasso
from .l1 import BNL1
from .nonconvex import BNMCP, BNSCAD, BNTL1, BNLp
from .oto import HSPG
from .polarization import Polarization
from .rsnli import CostWeightedL1
from .scp import SoftChannelPruning
from .weight_half import WeightLHalf

__all__ = ["BNL1", "BNLp", "BNMCP", "BNRegularizer", "BNSCAD", "BNTL1", "CostWeightedL1", "GroupLHalf",
           "GroupLasso", "GrowingL2", "HGL", "HSPG", "L12", "NoRegularizer", "Polarization", "Regularizer",
           "SoftChannelPruning", "WeightLHalf"]
