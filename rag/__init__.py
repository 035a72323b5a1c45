"""Question answering over a document with quoted, cited passages.

The package is light to import on purpose: heavy libraries (torch, sentence-transformers,
faiss, llama-index) are imported inside the modules and functions that need them.
"""

__version__ = "0.1.0"
