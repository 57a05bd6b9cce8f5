"""The config.json fields of the public checkpoints our built-in models copy (values as
published on the Hugging Face Hub), shared by the config and stats tests."""

LLAMA2 = {
    "model_type": "llama", "hidden_act": "silu", "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
    "torch_dtype": "float16", "vocab_size": 32000, "pretraining_tp": 1,
}  # fmt: skip
OPT = {
    "model_type": "opt", "activation_function": "relu", "do_layer_norm_before": True,
    "max_position_embeddings": 2048, "torch_dtype": "float16", "vocab_size": 50272,
    "enable_bias": True,
}  # fmt: skip
MISTRAL = {
    "model_type": "mistral", "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "vocab_size": 32000,
}  # fmt: skip

PUBLIC_CONFIGS = {
    "llama2-7b": {**LLAMA2, "hidden_size": 4096, "intermediate_size": 11008,
                  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32},
    "llama2-13b": {**LLAMA2, "hidden_size": 5120, "intermediate_size": 13824,
                   "num_attention_heads": 40, "num_hidden_layers": 40, "num_key_value_heads": 40},
    "tinyllama-1.1b": {
        **LLAMA2, "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32,
        "num_hidden_layers": 22, "num_key_value_heads": 4, "max_position_embeddings": 2048,
        "rope_theta": 10000.0, "torch_dtype": "bfloat16",
    },
    "llama2-70b": {**LLAMA2, "hidden_size": 8192, "intermediate_size": 28672,
                   "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8},
    "llama3-8b": {
        **LLAMA2, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192,
        "rope_theta": 500000.0, "torch_dtype": "bfloat16", "vocab_size": 128256,
    },
    "mistral-7b": {**MISTRAL, "sliding_window": 4096},
    "mixtral-8x7b": {
        **MISTRAL, "model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2,
        "rope_theta": 1000000.0, "sliding_window": None, "router_aux_loss_coef": 0.02,
    },
    "opt-6.7b": {**OPT, "ffn_dim": 16384, "hidden_size": 4096, "num_attention_heads": 32,
                 "num_hidden_layers": 32, "word_embed_proj_dim": 4096},
    "opt-125m": {**OPT, "ffn_dim": 3072, "hidden_size": 768, "num_attention_heads": 12,
                 "num_hidden_layers": 12, "word_embed_proj_dim": 768},
    "gpt2": {
        "model_type": "gpt2", "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05,
        "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024,
        "vocab_size": 50257,
    },
    "bert-base": {
        "model_type": "bert", "hidden_act": "gelu", "hidden_size": 768,
        "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
        "num_attention_heads": 12, "num_hidden_layers": 12, "type_vocab_size": 2,
        "vocab_size": 30522, "position_embedding_type": "absolute",
    },
    "tiny-llama": {
        **LLAMA2, "hidden_size": 64, "intermediate_size": 172, "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "vocab_size": 256,
        "max_position_embeddings": 256, "torch_dtype": "float32",
    },
}  # fmt: skip

# The transformers class (by model_type) whose `num_parameters()` our count must equal.
HF_CLASSES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
    "opt": "OPTForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "bert": "BertModel",
}
