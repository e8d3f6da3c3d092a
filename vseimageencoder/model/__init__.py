"""The VSE++ towers in plain torch (:mod:`.image`, :mod:`.text`) and the image tower prepared
for inference (:mod:`.inference`: devices, precision, BN folding; :mod:`.onednn_graph`: its
backbone compiled for CPUs). No file reading here: :mod:`vseimageencoder.release` loads them."""
