"""Shared fixtures: tiny models built from configs (random weights, no download) and small data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Every Ray cluster the tests start (they bind every interface: Ray 2.x) takes one token, set before
# Ray is first imported so that heads, workers and drivers all read the same one; a ~/.ray/auth_token
# left by an earlier local ray.init() cannot disagree with it.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = os.urandom(16).hex()
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.exists():  # CI lays shared/ beside the clone
    SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:\nGive three tips for staying healthy.\n\n### Response:",
    "1. Eat a balanced diet. 2. Exercise regularly. 3. Get enough sleep.",
    "What is the capital of France? The capital of France is Paris.",
    "Translate to German: good morning. Guten Morgen.",
    "A chat between a curious user and an artificial intelligence assistant. USER: hi ASSISTANT: hello",
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}<>",
]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return _tokenizer()


def build_tiny(kind: str, tok, seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        return LlamaForCausalLM(cfg).eval()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=512)
    return GPT2LMHeadModel(cfg).eval()


def save_tiny_reward_model(tok, path, seed: int, **config):
    """A one-label BERT reward model built from a config (random weights, seeded), saved with ``tok``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(seed)
    m = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=64, num_labels=1,
                                                 pad_token_id=tok.pad_token_id, **config))
    m.save_pretrained(path)
    tok.save_pretrained(path)
    return m


@pytest.fixture(scope="session")
def tiny_llama(tiny_tokenizer):
    from tunesift.models import wrap_model
    return wrap_model(build_tiny("llama", tiny_tokenizer), tiny_tokenizer, "tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_tokenizer):
    from tunesift.models import wrap_model
    return wrap_model(build_tiny("gpt2", tiny_tokenizer), tiny_tokenizer, "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny Llama saved as a local model directory (what --model PATH loads)."""
    d = tmp_path_factory.mktemp("tiny-llama")
    build_tiny("llama", tiny_tokenizer).save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, exercise, and sleep enough."},
    {"instruction": "Translate to German.", "input": "good morning", "output": "Guten Morgen."},
    {"instruction": "What is the capital of France?", "input": "", "output": "The capital of France is Paris."},
    {"instruction": "Write a function that adds two numbers.", "input": "", "output": "def add(a, b):\n    return a + b"},
    {"instruction": "Repeat: the quick brown fox.", "input": "", "output": "the quick brown fox."},
    {"instruction": "Name a color.", "input": "", "output": "Blue."},
    {"instruction": "Summarise the text.", "input": "The quick brown fox jumps over the lazy dog many times a day.",
     "output": "A fox keeps jumping over a dog."},
    {"instruction": "Count to five.", "input": "", "output": "1, 2, 3, 4, 5"},
]


@pytest.fixture
def alpaca_file(tmp_path):
    p = tmp_path / "alpaca.json"
    p.write_text(json.dumps(ALPACA, indent=2))
    return p


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED.exists():
        pytest.skip("../shared/data is not present")
    return SHARED


@pytest.fixture(scope="session")
def tiny_embedder(tiny_tokenizer, tmp_path_factory):
    """A tiny BERT encoder built from a config, behind the real Embedder (pooling, cache)."""
    import torch
    from transformers import BertConfig, BertModel
    from tunesift.signals.embeddings import Embedder
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=512))
    return Embedder(encoder=enc, tokenizer=tiny_tokenizer, device="cpu", progress=False,
                    cache_dir=str(tmp_path_factory.mktemp("emb-cache")))
