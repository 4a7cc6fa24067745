"""The host: the file system (every write through fsutil), helper processes, memory that
holds secrets, root's helper, bounded reads of untrusted files, progress on a terminal."""
