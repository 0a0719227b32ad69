"""docs/errors.md is generated from the code tables; it must say what the code says."""

from __future__ import annotations

from services.gateway.error_catalogue import DOCUMENT, main, render
from services.gateway.errors import CODES, Code
from services.ingest.validation import (
    FILE_ERRORS,
    HEADER_ERRORS,
    ROW_ERRORS,
    FileErrorCode,
    HeaderErrorCode,
    RowErrorCode,
)


def test_every_code_is_described() -> None:
    assert set(CODES) == set(Code)
    assert set(ROW_ERRORS) == set(RowErrorCode)
    assert set(FILE_ERRORS) == set(FileErrorCode)
    assert set(HEADER_ERRORS) == set(HeaderErrorCode)
    descriptions = [spec.description for spec in CODES.values()]
    descriptions += [*ROW_ERRORS.values(), *FILE_ERRORS.values(), *HEADER_ERRORS.values()]
    assert all(text.strip() for text in descriptions)


def test_docs_errors_md_is_up_to_date() -> None:
    """Run ``python -m services.gateway.error_catalogue`` when this fails."""
    assert DOCUMENT.read_text(encoding="utf-8") == render()
    assert main(["--check"]) == 0


def test_the_document_lists_every_code() -> None:
    text = render()
    for code in (*Code, *RowErrorCode, *FileErrorCode, *HeaderErrorCode):
        assert f"| `{code}` |" in text
