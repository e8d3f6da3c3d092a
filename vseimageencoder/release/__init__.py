"""VSE++ releases: where checkpoints are (:mod:`.locate`), checking pickles before they are
unpickled (:mod:`.pickle_scan`), reading and writing the release checkpoint format
(:mod:`.checkpoint`), the vocabulary (:mod:`.vocab`), and the released weights (:mod:`.weights`)."""
