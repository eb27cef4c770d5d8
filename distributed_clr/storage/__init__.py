"""Datasets on disk or object storage: formats, atomic files, the stage record, the one reader.

* ``formats``: the Arrow schemas of raw events, prepared dijets and embeddings, and their checks.
* ``files``: atomic writes (temporary name, fsync, rename) and checksums.
* ``manifest``: ``manifest.json``, the record that makes every stage resumable and checkable.
* ``reader``: the one shard reader (Ray Data and Arrow streaming) and the dijet tensor view.
"""
