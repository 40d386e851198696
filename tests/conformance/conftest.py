"""Loading and checking the Cedar project's conformance corpus.

The corpus lives outside the repository: ``$AGENTAUTHZ_CEDAR_CORPUS`` or
``../shared/cedar-corpus`` next to the repository root. Its 7,809 generated
tests ship as one tarball; the files of the tests a run covers are extracted
once per session into a temporary directory that is removed afterwards (all
of it is 140 MB unpacked).

Test files are chosen at collection time so that a failure names its corpus
file. ``AGENTAUTHZ_CORPUS_SAMPLE`` chooses how many: unset means a fixed sample
of :data:`DEFAULT_SAMPLE_SIZE` files evenly spaced over the sorted names (the
same files on every run and machine), ``all`` means every file, and a number
means that many evenly spaced files.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import (
    CORPUS_ENV,
    DEFAULT_SAMPLE_SIZE,
    GENERATED_DIR,
    HANDWRITTEN_DIR,
    SAMPLE_ENV,
    TARBALL,
    CorpusCase,
    corpus_root,
    erring_policies,
    generated_names,
    handwritten_names,
    missing_reason,
    sample,
    selected_generated_names,
)

__all__ = [
    "CORPUS_ENV",
    "DEFAULT_SAMPLE_SIZE",
    "GENERATED_DIR",
    "HANDWRITTEN_DIR",
    "SAMPLE_ENV",
    "TARBALL",
    "CorpusCase",
    "corpus_root",
    "erring_policies",
    "generated_names",
    "handwritten_names",
    "missing_reason",
    "sample",
    "selected_generated_names",
]


def _skipped(reason: str) -> list[Any]:
    return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="corpus-absent")]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over corpus files by name, so that a failure names its file."""
    if "corpus_file" in metafunc.fixturenames:
        reason = missing_reason(TARBALL)
        params = _skipped(reason) if reason else selected_generated_names()
        metafunc.parametrize("corpus_file", params)
    if "handwritten_file" in metafunc.fixturenames:
        reason = missing_reason(HANDWRITTEN_DIR)
        params = _skipped(reason) if reason else handwritten_names()
        metafunc.parametrize("handwritten_file", params)


@pytest.fixture(scope="session")
def generated_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tarball extracted once per session; paths in its tests resolve from here."""
    reason = missing_reason(TARBALL)
    if reason:
        pytest.skip(reason)
    destination = tmp_path_factory.mktemp("cedar-corpus")
    # Only the files of the tests this run covers: writing out the whole corpus
    # costs 5 s, a sample's share of it 1 s. A test's files share its name.
    wanted = set(selected_generated_names())

    def members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for member in archive:
            folder, _, file = member.name.partition("/")
            if folder == GENERATED_DIR and file.partition(".")[0] in wanted:
                yield member

    try:
        with tarfile.open(corpus_root() / TARBALL) as archive:
            # The "data" filter refuses absolute paths, links out of the folder and
            # device files: the tarball is data, not something to trust.
            archive.extractall(destination, members=members(archive), filter="data")
        yield destination
    finally:
        # 140 MB per session: pytest would otherwise keep the last three around.
        shutil.rmtree(destination, ignore_errors=True)


@pytest.fixture(scope="session")
def generated_corpus_names() -> tuple[str, ...]:
    """Sorted names of every generated corpus test, without extracting anything."""
    reason = missing_reason(TARBALL)
    if reason:
        pytest.skip(reason)
    return generated_names()


@pytest.fixture(scope="session")
def handwritten_corpus() -> Path:
    """The corpus folder; hand-written tests name their files relative to it."""
    reason = missing_reason(HANDWRITTEN_DIR)
    if reason:
        pytest.skip(reason)
    return corpus_root()


@pytest.fixture
def generated_case(corpus_file: str, generated_corpus: Path) -> CorpusCase:
    """The generated corpus test this test is parametrized with."""
    return CorpusCase.load(generated_corpus / GENERATED_DIR / f"{corpus_file}.json",
                           generated_corpus)


@pytest.fixture
def handwritten_case(handwritten_file: str, handwritten_corpus: Path) -> CorpusCase:
    """The hand-written corpus test this test is parametrized with."""
    return CorpusCase.load(handwritten_corpus / HANDWRITTEN_DIR / f"{handwritten_file}.json",
                           handwritten_corpus)


@pytest.fixture(scope="session")
def selected_generated_files(generated_corpus: Path) -> list[Path]:
    """The generated corpus test files this run covers."""
    return [generated_corpus / GENERATED_DIR / f"{name}.json"
            for name in selected_generated_names()]
