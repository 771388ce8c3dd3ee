"""The bert family: config.py (fields and presets, no torch), model.py (the encoder, pooler and pretraining heads
over lmforge.nn), hf.py (the Hugging Face BertModel / BertForMaskedLM / BertForPreTraining key map)."""
