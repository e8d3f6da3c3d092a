"""Embedding many image files: reading ahead on threads (:mod:`.prefetch`), how many threads
(:mod:`.thread_budget`), threads that each read and run a batch (:mod:`.batch_threads`), JPEG
decoding on a CUDA device (:mod:`.cuda_decode`), and the runner that picks one (:mod:`.embed_files`)."""
