"""Defaults and names the whole package shares. Imports nothing, so any module (and the CLI,
which must start fast) can use them."""

from __future__ import annotations

DEFAULT_METRIC = "ndcg@10"
DEFAULT_COMPARE_METRICS = ("recall@10", "ndcg@10", "coverage")
DEFAULT_REGISTRY_PATH = "artifacts/cf/registry.json"
DEFAULT_BERT_REGISTRY_PATH = "artifacts/cf/bert_registry.json"

ENV_DATABASE_URL = "CFREG_DATABASE_URL"
ENV_ROOT = "CFREG_ROOT"

MODEL_STATUS = {"active": "active", "archived": "archived", "failed": "failed"}  # the original's constant
MODEL_STATUSES = tuple(MODEL_STATUS)
AB_TEST_STATUSES = ("running", "stopped")
AB_ARMS = ("control", "treatment")
