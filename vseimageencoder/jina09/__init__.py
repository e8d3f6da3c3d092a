"""The jina 0.9.33 front end: the executors (:mod:`.executor`), their YAML tags
(:mod:`.yaml_tags`), the import guard and offline switch (:mod:`.offline`) and jina's own
command line kept offline (:mod:`.cli`). Importing this package imports no jina."""
