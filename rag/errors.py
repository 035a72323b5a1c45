"""The engine's exceptions, all raised as subclasses of `RagError`.

    RagError                 anything the engine reports to a user
    ├── ConfigError          a bad or unknown config key, or an unreadable config file
    ├── DocumentError        a document that is missing, unreadable, empty or of an unknown type
    │   ├── UnreadableDocumentError  corrupt, truncated, encrypted, mislabelled or undecodable
    │   ├── EmptyDocumentError       no text (an empty file, a PDF without a text layer)
    │   └── DocumentTooLargeError    over the size cap, or a DOCX that unpacks to too much
    ├── IndexCorruptError    a persisted index file that cannot be read back
    ├── IndexMissingError    no index to read yet (none built or published, or one of an older format)
    ├── PublishedIndexMismatchError  the shared index holds other documents than the config names
    ├── ModelError           the embedding model cannot be loaded
    ├── QuestionError        a question that is empty or too long
    └── StoreUnavailableError  the PostgreSQL store cannot be reached (down, restarting)

Front ends translate these into a one-line message (CLI) or a polite reply (bot); the engine
itself never prints.
"""


class RagError(Exception):
    """Base class of every error the engine reports to a user."""


class ConfigError(RagError):
    """The configuration is invalid; the message names the key."""


class DocumentError(RagError):
    """A document cannot be used; the message names the file."""


class IndexCorruptError(RagError):
    """A persisted index file is truncated or corrupt; the message names the file and the remedy."""


class IndexMissingError(RagError):
    """There is no index to read yet: none built or published, or one of another format; the
    message says how to make one."""


class PublishedIndexMismatchError(RagError):
    """The index published in PostgreSQL holds other documents than this config names (a reader
    never builds, so it would answer from other documents than asked)."""


class ModelError(RagError):
    """The embedding model cannot be loaded."""


class QuestionError(RagError):
    """The question cannot be answered as asked (empty, too long)."""


class StoreUnavailableError(RagError):
    """The database of the PostgreSQL store cannot be reached; the next call tries again."""


class UnreadableDocumentError(DocumentError):
    """A document that cannot be parsed: corrupt, truncated, encrypted, of another type than its
    extension says, or in an unknown text encoding."""


class EmptyDocumentError(DocumentError):
    """A document with no text to answer from (empty, or a PDF without a text layer)."""


class DocumentTooLargeError(DocumentError):
    """A document over the size limit, or a DOCX whose contents unpack to more than the limit."""
