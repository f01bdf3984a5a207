"""Exactness of the measurement core: the same scenarios in process, under
other Pythons, through the RIE and in the image (see `check`)."""
