"""The distilbert family: config.py (fields and presets, no torch), model.py (the half-depth encoder over lmforge.nn),
hf.py (the Hugging Face DistilBertModel / DistilBertForMaskedLM key map)."""
