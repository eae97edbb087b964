"""Which tokenizer counts a model's tokens, and counting with it, without importing litellm.

Counts are stored per tokenizer (many models share one), so the choice here is the key under
which a message's count is kept. The tokenizer files never come from the network:

- OpenAI models are counted with their own tiktoken encoding (o200k_base or cl100k_base), read
  from the copies litellm ships;
- llama 2, llama 3 and Cohere command-r are counted with their Hugging Face tokenizer when it is
  already in the local Hugging Face cache;
- anything else (or one of those when its tokenizer is not cached) is counted with cl100k_base as
  a stand-in, and FALLBACK_MARGIN of the budget is held back for the difference.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from memchat.config import huggingface_hub_cache, tiktoken_files_given, use_tiktoken_files

FALLBACK_ENCODING = "cl100k_base"
FALLBACK_MARGIN = 0.2
"""Share of the budget held back when a stand-in tokenizer counts for the model's own: the
tokenizers it stands in for (llama 2's, Claude's, Gemini's) count up to ~20% more on English."""

_O200K_MODELS = re.compile(r"^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4)")
_CL100K_MODELS = re.compile(r"^(gpt-4|gpt-3\.5|gpt-35|text-embedding-3|text-embedding-ada)")
_HF_TOKENIZERS = (
    (re.compile(r"llama[-_ ]?3"), "Xenova/llama-3-tokenizer"),
    (re.compile(r"llama[-_ ]?2"), "hf-internal-testing/llama-tokenizer"),
    (re.compile(r"command-r"), "Xenova/c4ai-command-r-v01-tokenizer"),
)


@dataclass(frozen=True)
class Tokenizer:
    name: str
    """The key counts are stored under: a tiktoken encoding name, or `hf:<repo>`."""
    margin: float = 0.0
    path: str | None = None
    """The tokenizer.json of a Hugging Face tokenizer."""

    @property
    def stand_in(self) -> bool:
        return self.margin > 0

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]

    def count_batch(self, texts: list[str]) -> list[int]:
        if self.path:
            return [len(encoding.ids) for encoding in _hf(self.path).encode_batch(texts, add_special_tokens=False)]
        encoding = _tiktoken(self.name)
        return [len(encoding.encode_ordinary(text)) for text in texts]

    def huggingface(self):
        """The loaded Hugging Face tokenizer, for litellm's `custom_tokenizer`; None for tiktoken."""
        return _hf(self.path) if self.path else None


def tokenizer_for(model: str) -> Tokenizer:
    provider, _, name = model.lower().rpartition("/")
    base = name.split(":", 1)[-1] if name.startswith("ft:") else name
    if _O200K_MODELS.match(base):
        return Tokenizer("o200k_base")
    if _CL100K_MODELS.match(base):
        return Tokenizer("cl100k_base")
    if provider == "memchat":
        return Tokenizer(FALLBACK_ENCODING)
    for pattern, repo in _HF_TOKENIZERS:
        if pattern.search(model.lower()):
            path = cached_huggingface_file(repo, "tokenizer.json")
            if path:
                return Tokenizer(f"hf:{repo}", path=str(path))
            break
    return Tokenizer(FALLBACK_ENCODING, margin=FALLBACK_MARGIN)


def cached_huggingface_file(repo: str, filename: str) -> Path | None:
    """A file of a Hugging Face repository if it is in the local hub cache; never downloads."""
    folder = huggingface_hub_cache() / ("models--" + repo.replace("/", "--"))
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    candidate = folder / "snapshots" / revision / filename
    return candidate if candidate.is_file() else None


def tiktoken_cache_dir() -> str | None:
    """litellm's bundled tiktoken files, found without importing litellm (which is slow)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"
    return str(folder) if folder.is_dir() else None


@lru_cache(maxsize=None)
def _tiktoken(name: str):
    if not tiktoken_files_given():
        folder = tiktoken_cache_dir()
        if folder:
            use_tiktoken_files(folder)
    import tiktoken

    return tiktoken.get_encoding(name)


@lru_cache(maxsize=None)
def _hf(path: str):
    from tokenizers import Tokenizer as HuggingFaceTokenizer

    return HuggingFaceTokenizer.from_file(path)
