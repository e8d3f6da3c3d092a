"""Files on disk: opening only regular files, and writing files that appear whole or not at all.
Imports neither numpy, torch nor jina."""
