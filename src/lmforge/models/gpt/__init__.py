"""The gpt family: config.py (fields and presets, no torch), model.py (the wiring over lmforge.nn), hf.py (the Hugging Face GPT-2 key map)."""
