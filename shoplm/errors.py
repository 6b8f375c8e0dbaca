"""Every error shoplm raises on purpose. Messages say what was wrong, what was expected
and how to fix it."""

from __future__ import annotations


class ShopLMError(Exception):
    """Base of all shoplm errors; the CLI prints these without a traceback."""


class ConfigError(ShopLMError):
    """A setting or option has a value shoplm cannot use."""


class UnsupportedFileType(ShopLMError):
    """A data file's extension names no reader."""


class InputFileMissing(ShopLMError):
    """A data file named on the command line does not exist."""


class ModelNotFound(ShopLMError):
    """A model directory is missing or is not a sentence-transformers model."""


class StoreError(ShopLMError):
    """The store could not be opened or written."""


class SchemaVersionMismatch(StoreError):
    """The store was created by a different shoplm schema version."""


class NotFound(ShopLMError):
    """An item, user or model the request names does not exist (HTTP 404)."""


class InvalidRecords(ShopLMError):
    """Records in a request broke the data model (HTTP 422); `problems` maps the record's
    position in the batch to what was wrong with it."""

    def __init__(self, kind: str, problems: dict):
        self.kind = kind
        self.problems = problems
        first = next(iter(problems.items()))
        super().__init__(f"{len(problems)} invalid record(s) in {kind}; first: {kind}[{first[0]}]: "
                         + "; ".join(str(p) for p in first[1]))


class ValidationFailed(ShopLMError):
    """Input records broke the data model and the command cannot go on without them
    (e.g. training data for search); the message lists examples with file and row."""


class ConvertError(ShopLMError):
    """A source data set could not be converted: a file is malformed or disagrees with another."""


class UnknownConverter(ConvertError):
    """`shoplm data convert FORMAT` names no registered converter."""


class SourceFileMissing(ConvertError):
    """A file the converter needs is not in the source directory."""


class WriteError(ShopLMError):
    """A record does not fit the columns it is written under."""


class RecommendDataError(ShopLMError):
    """Items or events given to recommendation training or evaluation cannot be used."""


class RecommendModelError(ShopLMError):
    """A saved recommendation model is missing, damaged, or does not fit the data it is used on."""


class IndexNotBuilt(ShopLMError):
    """An index directory is missing or incomplete."""


class IndexMismatch(ShopLMError):
    """Vectors, ids or an index directory disagree with what the caller expects."""


class NoTrainingData(ShopLMError):
    """Fine-tuning found no (query, item) positives in the given judgments or events."""
