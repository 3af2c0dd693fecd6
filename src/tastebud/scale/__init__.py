"""Running tastebud beyond one process, on Ray (https://docs.ray.io), an existing distributed engine.

Same models, same files, same results; no home-made cluster code:

* :mod:`tastebud.scale.ray_ials`: iALS sweeps as parallel Ray tasks over row blocks of the
  interaction matrix, factors shared through the object store;
* :mod:`tastebud.scale.ray_train`: the neural models (two-tower, NCF, SASRec) on Ray Train,
  data-parallel with gradients all-reduced over ``torch.distributed`` (gloo on CPU, nccl on GPU);
* :mod:`tastebud.scale.batch`: top-k for every user with Ray Data, written as Parquet partitions,
  item vectors exported the same way and a FAISS index built from them;
* :mod:`tastebud.data.parquet`: interactions read from Parquet partitions on any filesystem
  pyarrow reads;
* :mod:`tastebud.scale.sharded`: iALS, NCF, the two-tower and SASRec trained on Ray straight from Parquet files, each
  worker reading and holding only its own block of users (and items), so no process ever holds
  all events.

Where a model trains is an argument of its fit: ``model.fit(data, engine=RayEngine(workers=8))``
(:mod:`tastebud.scale.engine`); a model's ``scale_out`` capability says which engines it supports.

Ray is optional (``pip install tastebud[scale]``) and imported lazily.
"""

from __future__ import annotations

from tastebud.scale.engine import RayEngine, fit_distributed
from tastebud.scale.session import ray_session, require_ray

__all__ = ["RayEngine", "fit_distributed", "ray_session", "require_ray"]
