"""Agora (reconstruction): grow the training set near the student's mistakes on a dev set, labelled by a
second model. `AgoraCallback` (callbacks=agora), the transformations, the labellers, the Θ loop
(hydra/sweeper=agora) and the torus example. See docs/agora.md."""
from bortlab.agora.callback import AgoraCallback
from bortlab.agora.labellers import Ensemble, Labeller, ModelLabeller, StudentLabeller, label_rows, load_labeller
from bortlab.agora.transforms import DropSwap, MaskedLMInfill, NearestNeighbour, Transformation, build_transform

__all__ = ["AgoraCallback", "Labeller", "ModelLabeller", "StudentLabeller", "Ensemble", "label_rows",
           "load_labeller", "Transformation", "NearestNeighbour", "MaskedLMInfill", "DropSwap", "build_transform"]
