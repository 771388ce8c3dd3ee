"""The lstm family: config.py (fields and presets, no torch), model.py (the wiring over lmforge.nn)."""
