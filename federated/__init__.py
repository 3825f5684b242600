"""federated: Flower + DP training at the sites, and the modelling pieces they share.

Importing the package pins torch's CPU kernels (federated/numerics.py) before any module of
ours loads torch, so training gives the same numbers on every x86-64 CPU.
"""

from federated.numerics import pin_kernel_env

pin_kernel_env()
