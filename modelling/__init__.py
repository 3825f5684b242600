"""modelling: the torch layer shared by centralized and federated training.

Models, the training loop, calibration, ONNX export, checkpoints, run directories and
evaluation. Importing the package pins torch's CPU kernels (modelling/numerics.py) before any
module of ours loads torch, so training gives the same numbers on every x86-64 CPU.
"""

from modelling.numerics import pin_kernel_env

pin_kernel_env()
