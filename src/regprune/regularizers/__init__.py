from .bar import BAR
from .base import BNRegularizer, NoRegularizer, Regularizer
from .dmc import DMC
from .exclusive import HGL, L12, GroupLHalf
from .gal import GAL
from .gated import GateRegularizer
from .gdp import GDP
from .greg import GrowingL2
from .group_lasso import GroupLasso
from .l1 import BNL1
from .nonconvex import BNMCP, BNSCAD, BNTL1, BNLp
from .oto import HSPG
from .polarization import Polarization
from .resrep import ResRep
from .rsnli import CostWeightedL1
from .scop import SCOP
from .scp import SoftChannelPruning
from .sss import SSS
from .weight_half import WeightLHalf

__all__ = ["BAR", "BNL1", "BNLp", "BNMCP", "BNRegularizer", "BNSCAD", "BNTL1", "CostWeightedL1", "DMC", "GAL", "GDP",
           "GateRegularizer", "GroupLHalf", "GroupLasso", "GrowingL2", "HGL", "HSPG", "L12", "NoRegularizer",
           "Polarization", "Regularizer", "ResRep", "SCOP", "SSS", "SoftChannelPruning", "WeightLHalf"]
