"""federated: Flower + DP-SGD at the sites, the coordinator, the privacy ledger, publishing.

Builds on ``modelling`` (the torch layer) and ``morpheus_ext`` (the torch-free core).
"""

import modelling  # noqa: F401  (pins the training kernels before torch loads)
