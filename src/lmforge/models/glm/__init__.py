"""The glm family: GLM (Du et al. 2022), the blank-infilling model. config.py (fields and presets, no torch), model.py
(the wiring over lmforge.nn and its decoding: part A read once, the blanks written one after another).

Not to be confused with GLM-4, the plain decoder that the llama family reads (`layout: glm`, Hugging Face
model_type "glm"): that one is a left-to-right chat model; this one fills blanks."""
