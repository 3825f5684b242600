"""Test-set AUROC/AUPRC of a federated run's pretrained initial model next to its final model.

Does the federation add anything over ``public.pretrain``? Scores the test data with the run's
normalizer and both weight sets (``initial_weights.pt`` and the final checkpoint), by the mean
squared reconstruction error in PyTorch (for the final model it matches the ONNX evaluation of
``fl compare`` to the 4th digit). docs/results.md, NSL-KDD section:

    PYTHONPATH=. python scripts/fl/score_initial_weights.py runs/nsl_lr0001/fl_dp_eps3
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from federated.audit import load_run
from federated.pretrain import INITIAL_WEIGHTS_FILE
from modelling.centralized import load_source
from modelling.checkpoint import load_checkpoint
from modelling.models import build_autoencoder
from morpheus_ext.feature_spec import load_spec
from morpheus_ext.stages.preprocess.featurizer import Featurizer


def main(run_dir: Path) -> None:
    torch.set_num_threads(1)
    fl, _, checkpoint_dir = load_run(run_dir)
    if fl.data.test is None:
        raise SystemExit("error: the run has no data.test")
    spec = load_spec(fl.data.spec)
    frame, _ = load_source(fl.data.test, spec)
    featurizer = Featurizer(spec)
    batch = featurizer.transform(frame)
    labels = featurizer.labels(batch.frame)
    checkpoint = load_checkpoint(checkpoint_dir)
    x = torch.tensor(checkpoint.normalizer.transform(np.asarray(batch.tensor)), dtype=torch.float32)

    def metrics(model: torch.nn.Module) -> str:
        with torch.no_grad():
            score = ((model.eval()(x) - x) ** 2).mean(1).numpy()
        auroc, auprc = roc_auc_score(labels, score), average_precision_score(labels, score)
        return f"AUROC {auroc:.4f}  AUPRC {auprc:.4f}"

    initial = build_autoencoder(fl.model, spec.tensor_width, fl.seed)
    initial.load_state_dict(torch.load(run_dir / INITIAL_WEIGHTS_FILE))
    print(f"pretrained initial model: {metrics(initial)}")
    print(f"final federated model:    {metrics(checkpoint.build(spec.tensor_width))}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: score_initial_weights.py RUN_DIR (a federated run directory)")
    main(Path(sys.argv[1]))
