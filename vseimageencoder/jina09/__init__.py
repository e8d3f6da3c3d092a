"""The jina 0.9.33 front end: executors, their YAML tags, the import guard and offline switch,
and jina's own command line kept offline. Importing this package imports no jina.
"""
