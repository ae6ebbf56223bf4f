"""What every tier shares: model files, the llama.cpp runtime, the LoRA trainer, GGUF LoRA export.

Heavy libraries (llama_cpp, torch, peft) are imported inside the functions that need them.
"""
