"""Generated from schemas/image.schema.json by fastjsonschema 2.22.3; do not edit.

Regenerate with `python -c 'import controller.manifests as m; m.write_fast_validator("Image")'`; controller/manifests.py
uses it only while SCHEMA_TEXT is the schema file's text."""
# ruff: noqa
# mypy: ignore-errors

SCHEMA_TEXT = '{\n  "$schema": "https://json-schema.org/draft/2020-12/schema",\n  "$id": "https://reconcile.example/schemas/image.schema.json",\n  "title": "Image",\n  "description": "A base disk image that VM volumes start from: imported once per host that needs it, verified by sha256, immutable.",\n  "type": "object",\n  "additionalProperties": false,\n  "required": [\n    "apiVersion",\n    "kind",\n    "metadata",\n    "spec"\n  ],\n  "properties": {\n    "apiVersion": {\n      "const": "reconcile/v1"\n    },\n    "kind": {\n      "const": "Image"\n    },\n    "metadata": {\n      "type": "object",\n      "additionalProperties": false,\n      "required": [\n        "name"\n      ],\n      "properties": {\n        "name": {\n          "type": "string",\n          "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"\n        },\n        "labels": {\n          "type": "object",\n          "propertyNames": {\n            "type": "string",\n            "maxLength": 253\n          },\n          "additionalProperties": {\n            "type": "string",\n            "maxLength": 1024\n          }\n        }\n      }\n    },\n    "spec": {\n      "type": "object",\n      "additionalProperties": false,\n      "required": [\n        "url",\n        "sha256"\n      ],\n      "properties": {\n        "url": {\n          "description": "http, https or file URL of the image.",\n          "type": "string",\n          "maxLength": 4096,\n          "pattern": "^(https?|file)://[^\\\\u0000-\\\\u0020\\\\u007f]+$"\n        },\n        "sha256": {\n          "description": "The image\'s sha256: its content is verified before any VM uses it.",\n          "type": "string",\n          "pattern": "^[0-9a-fA-F]{64}$"\n        },\n        "format": {\n          "enum": [\n            "qcow2",\n            "raw"\n          ],\n          "default": "qcow2"\n        },\n        "pool": {\n          "description": "The pool it is imported into on each host (default: default).",\n          "type": "string",\n          "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"\n        }\n      }\n    }\n  }\n}\n'

VERSION = "2.22.3"
from decimal import Decimal
import re
class JsonSchemaValueException(ValueError):
    def __init__(self, message='', *args, **kwargs):
        super().__init__(message)


JsonSchemaValuesException = JsonSchemaValueException


REGEX_PATTERNS = {
    '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$': re.compile('^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\\Z'),
    '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$': re.compile('^(https?|file)://[^\\u0000-\\u0020\\u007f]+\\Z'),
    '^[0-9a-fA-F]{64}$': re.compile('^[0-9a-fA-F]{64}\\Z')
}

NoneType = type(None)

def validate_https___reconcile_example_schemas_image_schema_json(data, custom_formats={}, name_prefix=None):
    if not isinstance(data, (dict)):
        raise JsonSchemaValueException("" + (name_prefix or "data") + " must be object", value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'https://json-schema.org/draft/2020-12/schema', '$id': 'https://reconcile.example/schemas/image.schema.json', 'title': 'Image', 'description': 'A base disk image that VM volumes start from: imported once per host that needs it, verified by sha256, immutable.', 'type': 'object', 'additionalProperties': False, 'required': ['apiVersion', 'kind', 'metadata', 'spec'], 'properties': {'apiVersion': {'const': 'reconcile/v1'}, 'kind': {'const': 'Image'}, 'metadata': {'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'labels': {'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, 'spec': {'type': 'object', 'additionalProperties': False, 'required': ['url', 'sha256'], 'properties': {'url': {'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, 'sha256': {'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'pool': {'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}}}}}, rule='type')
    data_is_dict = isinstance(data, dict)
    if data_is_dict:
        data__missing_keys = set(['apiVersion', 'kind', 'metadata', 'spec']) - data.keys()
        if data__missing_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'https://json-schema.org/draft/2020-12/schema', '$id': 'https://reconcile.example/schemas/image.schema.json', 'title': 'Image', 'description': 'A base disk image that VM volumes start from: imported once per host that needs it, verified by sha256, immutable.', 'type': 'object', 'additionalProperties': False, 'required': ['apiVersion', 'kind', 'metadata', 'spec'], 'properties': {'apiVersion': {'const': 'reconcile/v1'}, 'kind': {'const': 'Image'}, 'metadata': {'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'labels': {'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, 'spec': {'type': 'object', 'additionalProperties': False, 'required': ['url', 'sha256'], 'properties': {'url': {'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, 'sha256': {'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'pool': {'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}}}}}, rule='required')
        data_keys = set(data.keys())
        if "apiVersion" in data_keys:
            data_keys.remove("apiVersion")
            data__apiVersion = data["apiVersion"]
            if not (isinstance(data__apiVersion, str) and data__apiVersion == 'reconcile/v1'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".apiVersion must be same as const definition: reconcile/v1", value=data__apiVersion, name="" + (name_prefix or "data") + ".apiVersion", definition={'const': 'reconcile/v1'}, rule='const')
        if "kind" in data_keys:
            data_keys.remove("kind")
            data__kind = data["kind"]
            if not (isinstance(data__kind, str) and data__kind == 'Image'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".kind must be same as const definition: Image", value=data__kind, name="" + (name_prefix or "data") + ".kind", definition={'const': 'Image'}, rule='const')
        if "metadata" in data_keys:
            data_keys.remove("metadata")
            data__metadata = data["metadata"]
            if not isinstance(data__metadata, (dict)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata must be object", value=data__metadata, name="" + (name_prefix or "data") + ".metadata", definition={'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'labels': {'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, rule='type')
            data__metadata_is_dict = isinstance(data__metadata, dict)
            if data__metadata_is_dict:
                data__metadata__missing_keys = set(['name']) - data__metadata.keys()
                if data__metadata__missing_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata must contain " + (str(sorted(data__metadata__missing_keys)) + " properties"), value=data__metadata, name="" + (name_prefix or "data") + ".metadata", definition={'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'labels': {'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, rule='required')
                data__metadata_keys = set(data__metadata.keys())
                if "name" in data__metadata_keys:
                    data__metadata_keys.remove("name")
                    data__metadata__name = data__metadata["name"]
                    if not isinstance(data__metadata__name, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.name must be string", value=data__metadata__name, name="" + (name_prefix or "data") + ".metadata.name", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='type')
                    if isinstance(data__metadata__name, str):
                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'].search(data__metadata__name):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.name must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", value=data__metadata__name, name="" + (name_prefix or "data") + ".metadata.name", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='pattern')
                if "labels" in data__metadata_keys:
                    data__metadata_keys.remove("labels")
                    data__metadata__labels = data__metadata["labels"]
                    if not isinstance(data__metadata__labels, (dict)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels must be object", value=data__metadata__labels, name="" + (name_prefix or "data") + ".metadata.labels", definition={'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}, rule='type')
                    data__metadata__labels_is_dict = isinstance(data__metadata__labels, dict)
                    if data__metadata__labels_is_dict:
                        data__metadata__labels_keys = set(data__metadata__labels.keys())
                        for data__metadata__labels_key in data__metadata__labels_keys:
                            if data__metadata__labels_key not in []:
                                data__metadata__labels_value = data__metadata__labels.get(data__metadata__labels_key)
                                if not isinstance(data__metadata__labels_value, (str)):
                                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels.{data__metadata__labels_key}".format(**locals()) + " must be string", value=data__metadata__labels_value, name="" + (name_prefix or "data") + ".metadata.labels.{data__metadata__labels_key}".format(**locals()) + "", definition={'type': 'string', 'maxLength': 1024}, rule='type')
                                if isinstance(data__metadata__labels_value, str):
                                    data__metadata__labels_value_len = len(data__metadata__labels_value)
                                    if data__metadata__labels_value_len > 1024:
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels.{data__metadata__labels_key}".format(**locals()) + " must be shorter than or equal to 1024 characters", value=data__metadata__labels_value, name="" + (name_prefix or "data") + ".metadata.labels.{data__metadata__labels_key}".format(**locals()) + "", definition={'type': 'string', 'maxLength': 1024}, rule='maxLength')
                        data__metadata__labels_len = len(data__metadata__labels)
                        if data__metadata__labels_len != 0:
                            data__metadata__labels_property_names = True
                            for data__metadata__labels_key in data__metadata__labels:
                                try:
                                    if not isinstance(data__metadata__labels_key, (str)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels must be string", value=data__metadata__labels_key, name="" + (name_prefix or "data") + ".metadata.labels", definition={'type': 'string', 'maxLength': 253}, rule='type')
                                    if isinstance(data__metadata__labels_key, str):
                                        data__metadata__labels_key_len = len(data__metadata__labels_key)
                                        if data__metadata__labels_key_len > 253:
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels must be shorter than or equal to 253 characters", value=data__metadata__labels_key, name="" + (name_prefix or "data") + ".metadata.labels", definition={'type': 'string', 'maxLength': 253}, rule='maxLength')
                                except (JsonSchemaValueException, JsonSchemaValuesException):
                                    data__metadata__labels_property_names = False
                            if not data__metadata__labels_property_names:
                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels must be named by propertyName definition", value=data__metadata__labels, name="" + (name_prefix or "data") + ".metadata.labels", definition={'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}, rule='propertyNames')
                if data__metadata_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata must not contain "+str(data__metadata_keys)+" properties", value=data__metadata, name="" + (name_prefix or "data") + ".metadata", definition={'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'labels': {'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, rule='additionalProperties')
        if "spec" in data_keys:
            data_keys.remove("spec")
            data__spec = data["spec"]
            if not isinstance(data__spec, (dict)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must be object", value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'type': 'object', 'additionalProperties': False, 'required': ['url', 'sha256'], 'properties': {'url': {'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, 'sha256': {'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'pool': {'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}}}, rule='type')
            data__spec_is_dict = isinstance(data__spec, dict)
            if data__spec_is_dict:
                data__spec__missing_keys = set(['url', 'sha256']) - data__spec.keys()
                if data__spec__missing_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must contain " + (str(sorted(data__spec__missing_keys)) + " properties"), value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'type': 'object', 'additionalProperties': False, 'required': ['url', 'sha256'], 'properties': {'url': {'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, 'sha256': {'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'pool': {'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}}}, rule='required')
                data__spec_keys = set(data__spec.keys())
                if "url" in data__spec_keys:
                    data__spec_keys.remove("url")
                    data__spec__url = data__spec["url"]
                    if not isinstance(data__spec__url, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.url must be string", value=data__spec__url, name="" + (name_prefix or "data") + ".spec.url", definition={'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, rule='type')
                    if isinstance(data__spec__url, str):
                        data__spec__url_len = len(data__spec__url)
                        if data__spec__url_len > 4096:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.url must be shorter than or equal to 4096 characters", value=data__spec__url, name="" + (name_prefix or "data") + ".spec.url", definition={'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, rule='maxLength')
                        if not REGEX_PATTERNS['^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'].search(data__spec__url):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.url must match pattern ^(https?|file)://[^\\u0000-\\u0020\\u007f]+$", value=data__spec__url, name="" + (name_prefix or "data") + ".spec.url", definition={'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, rule='pattern')
                if "sha256" in data__spec_keys:
                    data__spec_keys.remove("sha256")
                    data__spec__sha256 = data__spec["sha256"]
                    if not isinstance(data__spec__sha256, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.sha256 must be string", value=data__spec__sha256, name="" + (name_prefix or "data") + ".spec.sha256", definition={'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, rule='type')
                    if isinstance(data__spec__sha256, str):
                        if not REGEX_PATTERNS['^[0-9a-fA-F]{64}$'].search(data__spec__sha256):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.sha256 must match pattern ^[0-9a-fA-F]{64}$", value=data__spec__sha256, name="" + (name_prefix or "data") + ".spec.sha256", definition={'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, rule='pattern')
                if "format" in data__spec_keys:
                    data__spec_keys.remove("format")
                    data__spec__format = data__spec["format"]
                    if not (isinstance(data__spec__format, str) and data__spec__format == 'qcow2' or isinstance(data__spec__format, str) and data__spec__format == 'raw'):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.format must be one of ['qcow2', 'raw']", value=data__spec__format, name="" + (name_prefix or "data") + ".spec.format", definition={'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, rule='enum')
                else: data__spec["format"] = 'qcow2'
                if "pool" in data__spec_keys:
                    data__spec_keys.remove("pool")
                    data__spec__pool = data__spec["pool"]
                    if not isinstance(data__spec__pool, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.pool must be string", value=data__spec__pool, name="" + (name_prefix or "data") + ".spec.pool", definition={'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='type')
                    if isinstance(data__spec__pool, str):
                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'].search(data__spec__pool):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.pool must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", value=data__spec__pool, name="" + (name_prefix or "data") + ".spec.pool", definition={'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='pattern')
                if data__spec_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must not contain "+str(data__spec_keys)+" properties", value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'type': 'object', 'additionalProperties': False, 'required': ['url', 'sha256'], 'properties': {'url': {'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, 'sha256': {'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'pool': {'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}}}, rule='additionalProperties')
        if data_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must not contain "+str(data_keys)+" properties", value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'https://json-schema.org/draft/2020-12/schema', '$id': 'https://reconcile.example/schemas/image.schema.json', 'title': 'Image', 'description': 'A base disk image that VM volumes start from: imported once per host that needs it, verified by sha256, immutable.', 'type': 'object', 'additionalProperties': False, 'required': ['apiVersion', 'kind', 'metadata', 'spec'], 'properties': {'apiVersion': {'const': 'reconcile/v1'}, 'kind': {'const': 'Image'}, 'metadata': {'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'labels': {'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, 'spec': {'type': 'object', 'additionalProperties': False, 'required': ['url', 'sha256'], 'properties': {'url': {'description': 'http, https or file URL of the image.', 'type': 'string', 'maxLength': 4096, 'pattern': '^(https?|file)://[^\\u0000-\\u0020\\u007f]+$'}, 'sha256': {'description': "The image's sha256: its content is verified before any VM uses it.", 'type': 'string', 'pattern': '^[0-9a-fA-F]{64}$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'pool': {'description': 'The pool it is imported into on each host (default: default).', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}}}}}, rule='additionalProperties')
    return data


validate = validate_https___reconcile_example_schemas_image_schema_json
