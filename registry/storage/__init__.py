"""Artifact stores (fsspec), content-addressed uploads and the loader's verified local cache.

* :mod:`registry.storage.store`: the store and object operations (S3, GCS, ``file://``...).
* :mod:`registry.storage.upload`: uploading a model folder; checking a folder already in a store.
* :mod:`registry.storage.cache`: the host-local, sha256-keyed, LRU-bounded cache the loader reads.
* :mod:`registry.storage.records`: a store-backed model's files made local through the cache.
* :mod:`registry.storage.refs`: which objects no model or embeddings version records any more.
* :mod:`registry.storage.embeddings`: BERT embeddings versions in the store (upload, in place, cached reads).
"""

from .store import ArtifactStore, is_uri, normalize_store_uri

__all__ = ["ArtifactStore", "is_uri", "normalize_store_uri"]
