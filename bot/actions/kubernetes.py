"""Kubernetes executors: scale, rollout restart, rollout undo, ConfigMap patch.

The pieces live in their own modules; this one keeps the import path
``bot.actions.kubernetes`` for the executors and the client factory:

* `bot.actions.kubernetes_client`: `kube_api_client` and the API calls, as JSON,
  with errors for humans and no credential in them;
* `bot.actions.kubernetes_base`: the executors' shared part (409 retry, snapshots);
* `bot.actions.kubernetes_scale`: ``k8s.scale``;
* `bot.actions.kubernetes_restart`: ``k8s.rollout_restart``;
* `bot.actions.kubernetes_undo`: ``k8s.rollout_undo``;
* `bot.actions.kubernetes_configmap`: ``k8s.configmap_patch``.
"""

from __future__ import annotations

from bot.actions.kubernetes_client import FIELD_MANAGER, kube_api_client
from bot.actions.kubernetes_configmap import ConfigMapPatchExecutor
from bot.actions.kubernetes_restart import RESTARTED_AT, RolloutRestartExecutor
from bot.actions.kubernetes_scale import ScaleExecutor
from bot.actions.kubernetes_undo import HASH_LABEL, REVISION, RolloutUndoExecutor

__all__ = [
    "FIELD_MANAGER",
    "HASH_LABEL",
    "RESTARTED_AT",
    "REVISION",
    "ConfigMapPatchExecutor",
    "RolloutRestartExecutor",
    "RolloutUndoExecutor",
    "ScaleExecutor",
    "kube_api_client",
]
