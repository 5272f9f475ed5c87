"""Reading the manifest directory: files, YAML, JSON Schema, cross-document checks.

    loader.py      load_directory: the whole tree into a LoadResult
    files.py       which files count, who may write them, a file's documents
    yamlread.py    strict, fast, safe YAML
    validation.py  the JSON Schemas, fast path and full explanation
    specs.py       documents to specs: defaults and the checks a schema cannot make
    result.py      LoadResult and Invalid

Pure apart from reading files. Everything wrong is an `Invalid` entry, never raised.
"""

from .files import EDITOR_LEFTOVERS
from .loader import DEFAULT_DISK_ROOTS, check_document, check_resource, load_directory
from .result import Invalid, LoadResult, printable
from .specs import HOSTS_FILE
from .validation import fast_validator_source, hosts_schema, schema, write_fast_validator

__all__ = ["DEFAULT_DISK_ROOTS", "EDITOR_LEFTOVERS", "HOSTS_FILE", "Invalid", "LoadResult",
           "check_document", "check_resource", "fast_validator_source", "hosts_schema",
           "load_directory", "printable", "schema", "write_fast_validator"]
