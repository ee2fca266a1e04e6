"""Board profiles (data) and the composition root: the only place that knows both the
core and the drivers."""
