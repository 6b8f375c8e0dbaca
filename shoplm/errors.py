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


class ValidationFailed(ShopLMError):
    """`--strict` ingestion met bad records, so nothing was written."""


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
