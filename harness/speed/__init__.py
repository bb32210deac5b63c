"""The speed benchmark: the training engine against the seeds' plain loop and a minimal loop
(``bench speed``, ``bench speed-accuracy``)."""
