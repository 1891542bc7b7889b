"""Training and evaluation data: the user's tables and folders, webdataset shards, the built-in world, batches."""
