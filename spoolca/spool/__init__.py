"""The spool on disk: the tree (claim, archive), the one publication path, results,
recovery, the stick."""
