"""Adapters for serving stacks: Hugging Face transformers (:mod:`.hf`) and vLLM / SGLang-style
samplers (:mod:`.serving`)."""
