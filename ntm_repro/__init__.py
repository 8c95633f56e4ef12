"""ntm-repro: Neural Turing Machines (Graves et al. 2014) and structured memory
(Zhang, Yu & Zhou 2015), reproduced end to end."""

__version__ = "0.1.0"
