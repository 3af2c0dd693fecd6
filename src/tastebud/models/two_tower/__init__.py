"""Two-tower retrieval: a user tower (pooled history, demographics, request context) and an item
tower (id and features) to unit vectors, trained with an in-batch sampled softmax whose logits are
corrected by each item's streamed in-batch probability (logQ).

Covington, Adams, Sargin. "Deep Neural Networks for YouTube Recommendations." RecSys 2016.
Yi, Yang, Hong, Cheng, Heldt, Kumthekar, Zhao, Wei, Chi. "Sampling-Bias-Corrected Neural
Modeling for Large Corpus Item Recommendations." RecSys 2019.

One job per module: :mod:`.estimator` (the registered :class:`TwoTower`), :mod:`.networks` (the
towers), :mod:`.loss` (sampled softmax, streaming frequencies), :mod:`.batches` (training
examples), :mod:`.features` (feature tables and request context). Importing the package registers
the model.
"""

from tastebud.models.two_tower.batches import ExampleRows, TrainingBatches, sample_history
from tastebud.models.two_tower.estimator import WEIGHTS, TwoTower
from tastebud.models.two_tower.features import ML_AGE_EDGES, TEXT_COLUMNS, USER_COLUMNS, request_context
from tastebud.models.two_tower.loss import StreamingFrequency, sampled_softmax_loss, softmax_rows
from tastebud.models.two_tower.networks import batch_vectors, build_net

__all__ = [
    "ML_AGE_EDGES",
    "TEXT_COLUMNS",
    "USER_COLUMNS",
    "WEIGHTS",
    "ExampleRows",
    "StreamingFrequency",
    "TrainingBatches",
    "TwoTower",
    "batch_vectors",
    "build_net",
    "request_context",
    "sample_history",
    "sampled_softmax_loss",
    "softmax_rows",
]
