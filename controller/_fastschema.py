"""Generated from schemas/virtualmachine.schema.json by fastjsonschema 2.22.3; do not edit.

Regenerate with `python -c 'import controller.manifests as m; m.write_fast_validator()'`; controller/manifests.py
uses it only while SCHEMA_TEXT is the schema file's text."""
# ruff: noqa
# mypy: ignore-errors

SCHEMA_TEXT = '{\n  "$schema": "https://json-schema.org/draft/2020-12/schema",\n  "$id": "https://reconcile.invalid/schemas/virtualmachine.schema.json",\n  "title": "VirtualMachine",\n  "description": "The desired state of one libvirt domain, as reconciled by `reconcile`.",\n  "type": "object",\n  "additionalProperties": false,\n  "required": ["apiVersion", "kind", "metadata"],\n  "properties": {\n    "apiVersion": {"const": "reconcile/v1"},\n    "kind": {"const": "VirtualMachine"},\n    "metadata": {\n      "type": "object",\n      "additionalProperties": false,\n      "required": ["name"],\n      "properties": {\n        "name": {\n          "description": "The libvirt domain name.",\n          "type": "string",\n          "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"\n        },\n        "uuid": {\n          "description": "Pins the domain UUID.",\n          "type": "string",\n          "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"\n        },\n        "labels": {\n          "description": "Free-form labels.",\n          "type": "object",\n          "propertyNames": {"type": "string", "maxLength": 253},\n          "additionalProperties": {"type": "string", "maxLength": 1024}\n        }\n      }\n    },\n    "spec": {\n      "type": "object",\n      "additionalProperties": false,\n      "properties": {\n        "state": {\n          "description": "What the domain should be.",\n          "enum": ["running", "stopped", "absent"],\n          "default": "running"\n        },\n        "memory": {"$ref": "#/$defs/memorySize", "description": "Maximum memory."},\n        "currentMemory": {"$ref": "#/$defs/memorySize", "description": "Balloon target, at most `memory`; defaults to `memory`."},\n        "vcpus": {"type": "integer", "minimum": 1, "maximum": 4096},\n        "type": {"enum": ["kvm", "qemu"], "default": "kvm"},\n        "arch": {"type": "string", "pattern": "^[a-z0-9_]{1,32}$", "description": "Default: the host\'s."},\n        "machine": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", "description": "Default: the hypervisor\'s default for arch."},\n        "autostart": {"type": "boolean", "default": false},\n        "updatePolicy": {"enum": ["restart", "next-boot"], "default": "restart"},\n        "stopTimeout": {"type": "integer", "minimum": 0, "maximum": 86400, "default": 60,\n                        "description": "Seconds of graceful shutdown before a hard destroy; 0 destroys at once."},\n        "adopt": {"type": "boolean", "default": false, "description": "May take over an existing domain that is not managed yet."},\n        "suspend": {"type": "boolean", "default": false, "description": "Observe and report drift, change nothing."},\n        "host": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",\n                 "description": "The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection."},\n        "moveStrategy": {"enum": ["cold", "live"], "default": "cold",\n                         "description": "How a change of host moves the VM: cold (stop, define on the target, start) or live (libvirt migration)."},\n        "disks": {\n          "type": "array",\n          "maxItems": 1024,\n          "items": {\n            "type": "object",\n            "additionalProperties": false,\n            "required": ["source"],\n            "properties": {\n              "source": {"type": "string", "minLength": 2, "maxLength": 4096, "pattern": "^/[^\\\\u0000-\\\\u001f\\\\u007f\\\\ud800-\\\\udfff\\\\ufffe\\\\uffff]*$"},\n              "format": {"enum": ["qcow2", "raw"], "default": "qcow2"},\n              "target": {"type": "string", "pattern": "^(vd|sd|hd|xvd)[a-z]{1,2}$"},\n              "bus": {"enum": ["virtio", "sata", "scsi", "ide"], "default": "virtio"},\n              "readonly": {"type": "boolean", "default": false}\n            }\n          }\n        },\n        "interfaces": {\n          "type": "array",\n          "maxItems": 32,\n          "items": {\n            "type": "object",\n            "additionalProperties": false,\n            "properties": {\n              "network": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},\n              "bridge": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$"},\n              "mac": {"type": "string", "pattern": "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"},\n              "model": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$", "default": "virtio"}\n            },\n            "oneOf": [\n              {"required": ["network"], "not": {"required": ["bridge"]}},\n              {"required": ["bridge"], "not": {"required": ["network"]}}\n            ]\n          }\n        }\n      },\n      "if": {"properties": {"state": {"const": "absent"}}, "required": ["state"]},\n      "then": {},\n      "else": {"required": ["memory", "vcpus"]}\n    }\n  },\n  "if": {\n    "not": {"properties": {"spec": {"properties": {"state": {"const": "absent"}}, "required": ["state"]}}, "required": ["spec"]}\n  },\n  "then": {"required": ["spec"]},\n  "$defs": {\n    "memorySize": {\n      "oneOf": [\n        {"type": "integer", "minimum": 1, "maximum": 17179869184, "description": "MiB"},\n        {"type": "string", "pattern": "^\\\\s*[0-9]+\\\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\\\s*$"}\n      ]\n    }\n  }\n}\n'

VERSION = "2.22.3"
from decimal import Decimal
import re
class JsonSchemaValueException(ValueError):
    def __init__(self, message='', *args, **kwargs):
        super().__init__(message)


JsonSchemaValuesException = JsonSchemaValueException


REGEX_PATTERNS = {
    '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$': re.compile('^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\\Z'),
    '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$': re.compile('^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\\Z'),
    '^[a-z0-9_]{1,32}$': re.compile('^[a-z0-9_]{1,32}\\Z'),
    '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$': re.compile('^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*\\Z'),
    '^(vd|sd|hd|xvd)[a-z]{1,2}$': re.compile('^(vd|sd|hd|xvd)[a-z]{1,2}\\Z'),
    '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$': re.compile('^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}\\Z'),
    '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$': re.compile('^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\\Z'),
    '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$': re.compile('^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\\Z'),
    '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$': re.compile('^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*\\Z')
}

NoneType = type(None)

def validate_https___reconcile_invalid_schemas_virtualmachine_schema_json(data, custom_formats={}, name_prefix=None):
    if not isinstance(data, (dict)):
        raise JsonSchemaValueException("" + (name_prefix or "data") + " must be object", value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'https://json-schema.org/draft/2020-12/schema', '$id': 'https://reconcile.invalid/schemas/virtualmachine.schema.json', 'title': 'VirtualMachine', 'description': 'The desired state of one libvirt domain, as reconciled by `reconcile`.', 'type': 'object', 'additionalProperties': False, 'required': ['apiVersion', 'kind', 'metadata'], 'properties': {'apiVersion': {'const': 'reconcile/v1'}, 'kind': {'const': 'VirtualMachine'}, 'metadata': {'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'uuid': {'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, 'labels': {'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, 'spec': {'type': 'object', 'additionalProperties': False, 'properties': {'state': {'description': 'What the domain should be.', 'enum': ['running', 'stopped', 'absent'], 'default': 'running'}, 'memory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'currentMemory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': 4096}, 'type': {'enum': ['kvm', 'qemu'], 'default': 'kvm'}, 'arch': {'type': 'string', 'pattern': '^[a-z0-9_]{1,32}$', 'description': "Default: the host's."}, 'machine': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Default: the hypervisor's default for arch."}, 'autostart': {'type': 'boolean', 'default': False}, 'updatePolicy': {'enum': ['restart', 'next-boot'], 'default': 'restart'}, 'stopTimeout': {'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, 'adopt': {'type': 'boolean', 'default': False, 'description': 'May take over an existing domain that is not managed yet.'}, 'suspend': {'type': 'boolean', 'default': False, 'description': 'Observe and report drift, change nothing.'}, 'host': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': 'The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection.'}, 'moveStrategy': {'enum': ['cold', 'live'], 'default': 'cold', 'description': 'How a change of host moves the VM: cold (stop, define on the target, start) or live (libvirt migration).'}, 'disks': {'type': 'array', 'maxItems': 1024, 'items': {'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}}, 'interfaces': {'type': 'array', 'maxItems': 32, 'items': {'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}}}, 'if': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, 'then': {}, 'else': {'required': ['memory', 'vcpus']}}}, 'if': {'not': {'properties': {'spec': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}}, 'required': ['spec']}}, 'then': {'required': ['spec']}, '$defs': {'memorySize': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}}}, rule='type')
    data_is_dict = isinstance(data, dict)
    if data_is_dict:
        data__missing_keys = set(['apiVersion', 'kind', 'metadata']) - data.keys()
        if data__missing_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'https://json-schema.org/draft/2020-12/schema', '$id': 'https://reconcile.invalid/schemas/virtualmachine.schema.json', 'title': 'VirtualMachine', 'description': 'The desired state of one libvirt domain, as reconciled by `reconcile`.', 'type': 'object', 'additionalProperties': False, 'required': ['apiVersion', 'kind', 'metadata'], 'properties': {'apiVersion': {'const': 'reconcile/v1'}, 'kind': {'const': 'VirtualMachine'}, 'metadata': {'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'uuid': {'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, 'labels': {'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, 'spec': {'type': 'object', 'additionalProperties': False, 'properties': {'state': {'description': 'What the domain should be.', 'enum': ['running', 'stopped', 'absent'], 'default': 'running'}, 'memory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'currentMemory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': 4096}, 'type': {'enum': ['kvm', 'qemu'], 'default': 'kvm'}, 'arch': {'type': 'string', 'pattern': '^[a-z0-9_]{1,32}$', 'description': "Default: the host's."}, 'machine': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Default: the hypervisor's default for arch."}, 'autostart': {'type': 'boolean', 'default': False}, 'updatePolicy': {'enum': ['restart', 'next-boot'], 'default': 'restart'}, 'stopTimeout': {'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, 'adopt': {'type': 'boolean', 'default': False, 'description': 'May take over an existing domain that is not managed yet.'}, 'suspend': {'type': 'boolean', 'default': False, 'description': 'Observe and report drift, change nothing.'}, 'host': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': 'The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection.'}, 'moveStrategy': {'enum': ['cold', 'live'], 'default': 'cold', 'description': 'How a change of host moves the VM: cold (stop, define on the target, start) or live (libvirt migration).'}, 'disks': {'type': 'array', 'maxItems': 1024, 'items': {'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}}, 'interfaces': {'type': 'array', 'maxItems': 32, 'items': {'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}}}, 'if': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, 'then': {}, 'else': {'required': ['memory', 'vcpus']}}}, 'if': {'not': {'properties': {'spec': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}}, 'required': ['spec']}}, 'then': {'required': ['spec']}, '$defs': {'memorySize': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}}}, rule='required')
        data_keys = set(data.keys())
        if "apiVersion" in data_keys:
            data_keys.remove("apiVersion")
            data__apiVersion = data["apiVersion"]
            if not (isinstance(data__apiVersion, str) and data__apiVersion == 'reconcile/v1'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".apiVersion must be same as const definition: reconcile/v1", value=data__apiVersion, name="" + (name_prefix or "data") + ".apiVersion", definition={'const': 'reconcile/v1'}, rule='const')
        if "kind" in data_keys:
            data_keys.remove("kind")
            data__kind = data["kind"]
            if not (isinstance(data__kind, str) and data__kind == 'VirtualMachine'):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".kind must be same as const definition: VirtualMachine", value=data__kind, name="" + (name_prefix or "data") + ".kind", definition={'const': 'VirtualMachine'}, rule='const')
        if "metadata" in data_keys:
            data_keys.remove("metadata")
            data__metadata = data["metadata"]
            if not isinstance(data__metadata, (dict)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata must be object", value=data__metadata, name="" + (name_prefix or "data") + ".metadata", definition={'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'uuid': {'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, 'labels': {'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, rule='type')
            data__metadata_is_dict = isinstance(data__metadata, dict)
            if data__metadata_is_dict:
                data__metadata__missing_keys = set(['name']) - data__metadata.keys()
                if data__metadata__missing_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata must contain " + (str(sorted(data__metadata__missing_keys)) + " properties"), value=data__metadata, name="" + (name_prefix or "data") + ".metadata", definition={'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'uuid': {'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, 'labels': {'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, rule='required')
                data__metadata_keys = set(data__metadata.keys())
                if "name" in data__metadata_keys:
                    data__metadata_keys.remove("name")
                    data__metadata__name = data__metadata["name"]
                    if not isinstance(data__metadata__name, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.name must be string", value=data__metadata__name, name="" + (name_prefix or "data") + ".metadata.name", definition={'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='type')
                    if isinstance(data__metadata__name, str):
                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'].search(data__metadata__name):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.name must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", value=data__metadata__name, name="" + (name_prefix or "data") + ".metadata.name", definition={'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='pattern')
                if "uuid" in data__metadata_keys:
                    data__metadata_keys.remove("uuid")
                    data__metadata__uuid = data__metadata["uuid"]
                    if not isinstance(data__metadata__uuid, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.uuid must be string", value=data__metadata__uuid, name="" + (name_prefix or "data") + ".metadata.uuid", definition={'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, rule='type')
                    if isinstance(data__metadata__uuid, str):
                        if not REGEX_PATTERNS['^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'].search(data__metadata__uuid):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.uuid must match pattern ^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$", value=data__metadata__uuid, name="" + (name_prefix or "data") + ".metadata.uuid", definition={'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, rule='pattern')
                if "labels" in data__metadata_keys:
                    data__metadata_keys.remove("labels")
                    data__metadata__labels = data__metadata["labels"]
                    if not isinstance(data__metadata__labels, (dict)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels must be object", value=data__metadata__labels, name="" + (name_prefix or "data") + ".metadata.labels", definition={'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}, rule='type')
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
                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata.labels must be named by propertyName definition", value=data__metadata__labels, name="" + (name_prefix or "data") + ".metadata.labels", definition={'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}, rule='propertyNames')
                if data__metadata_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".metadata must not contain "+str(data__metadata_keys)+" properties", value=data__metadata, name="" + (name_prefix or "data") + ".metadata", definition={'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'uuid': {'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, 'labels': {'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, rule='additionalProperties')
        if "spec" in data_keys:
            data_keys.remove("spec")
            data__spec = data["spec"]
            if not isinstance(data__spec, (dict)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must be object", value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'type': 'object', 'additionalProperties': False, 'properties': {'state': {'description': 'What the domain should be.', 'enum': ['running', 'stopped', 'absent'], 'default': 'running'}, 'memory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'currentMemory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': 4096}, 'type': {'enum': ['kvm', 'qemu'], 'default': 'kvm'}, 'arch': {'type': 'string', 'pattern': '^[a-z0-9_]{1,32}$', 'description': "Default: the host's."}, 'machine': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Default: the hypervisor's default for arch."}, 'autostart': {'type': 'boolean', 'default': False}, 'updatePolicy': {'enum': ['restart', 'next-boot'], 'default': 'restart'}, 'stopTimeout': {'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, 'adopt': {'type': 'boolean', 'default': False, 'description': 'May take over an existing domain that is not managed yet.'}, 'suspend': {'type': 'boolean', 'default': False, 'description': 'Observe and report drift, change nothing.'}, 'host': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': 'The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection.'}, 'moveStrategy': {'enum': ['cold', 'live'], 'default': 'cold', 'description': 'How a change of host moves the VM: cold (stop, define on the target, start) or live (libvirt migration).'}, 'disks': {'type': 'array', 'maxItems': 1024, 'items': {'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}}, 'interfaces': {'type': 'array', 'maxItems': 32, 'items': {'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}}}, 'if': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, 'then': {}, 'else': {'required': ['memory', 'vcpus']}}, rule='type')
            data__spec_is_dict = isinstance(data__spec, dict)
            if data__spec_is_dict:
                data__spec_keys = set(data__spec.keys())
                if "state" in data__spec_keys:
                    data__spec_keys.remove("state")
                    data__spec__state = data__spec["state"]
                    if not (isinstance(data__spec__state, str) and data__spec__state == 'running' or isinstance(data__spec__state, str) and data__spec__state == 'stopped' or isinstance(data__spec__state, str) and data__spec__state == 'absent'):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.state must be one of ['running', 'stopped', 'absent']", value=data__spec__state, name="" + (name_prefix or "data") + ".spec.state", definition={'description': 'What the domain should be.', 'enum': ['running', 'stopped', 'absent'], 'default': 'running'}, rule='enum')
                else: data__spec["state"] = 'running'
                if "memory" in data__spec_keys:
                    data__spec_keys.remove("memory")
                    data__spec__memory = data__spec["memory"]
                    validate_https___reconcile_invalid_schemas_virtualmachine_schema_json___defs_memorysize(data__spec__memory, custom_formats, (name_prefix or "data") + ".spec.memory")
                if "currentMemory" in data__spec_keys:
                    data__spec_keys.remove("currentMemory")
                    data__spec__currentMemory = data__spec["currentMemory"]
                    validate_https___reconcile_invalid_schemas_virtualmachine_schema_json___defs_memorysize(data__spec__currentMemory, custom_formats, (name_prefix or "data") + ".spec.currentMemory")
                if "vcpus" in data__spec_keys:
                    data__spec_keys.remove("vcpus")
                    data__spec__vcpus = data__spec["vcpus"]
                    if not isinstance(data__spec__vcpus, (int)) and not (isinstance(data__spec__vcpus, float) and data__spec__vcpus.is_integer()) or isinstance(data__spec__vcpus, bool):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.vcpus must be integer", value=data__spec__vcpus, name="" + (name_prefix or "data") + ".spec.vcpus", definition={'type': 'integer', 'minimum': 1, 'maximum': 4096}, rule='type')
                    if isinstance(data__spec__vcpus, (int, float, Decimal)) and not isinstance(data__spec__vcpus, bool):
                        if data__spec__vcpus < 1:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.vcpus must be bigger than or equal to 1", value=data__spec__vcpus, name="" + (name_prefix or "data") + ".spec.vcpus", definition={'type': 'integer', 'minimum': 1, 'maximum': 4096}, rule='minimum')
                        if data__spec__vcpus > 4096:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.vcpus must be smaller than or equal to 4096", value=data__spec__vcpus, name="" + (name_prefix or "data") + ".spec.vcpus", definition={'type': 'integer', 'minimum': 1, 'maximum': 4096}, rule='maximum')
                if "type" in data__spec_keys:
                    data__spec_keys.remove("type")
                    data__spec__type = data__spec["type"]
                    if not (isinstance(data__spec__type, str) and data__spec__type == 'kvm' or isinstance(data__spec__type, str) and data__spec__type == 'qemu'):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.type must be one of ['kvm', 'qemu']", value=data__spec__type, name="" + (name_prefix or "data") + ".spec.type", definition={'enum': ['kvm', 'qemu'], 'default': 'kvm'}, rule='enum')
                else: data__spec["type"] = 'kvm'
                if "arch" in data__spec_keys:
                    data__spec_keys.remove("arch")
                    data__spec__arch = data__spec["arch"]
                    if not isinstance(data__spec__arch, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.arch must be string", value=data__spec__arch, name="" + (name_prefix or "data") + ".spec.arch", definition={'type': 'string', 'pattern': '^[a-z0-9_]{1,32}$', 'description': "Default: the host's."}, rule='type')
                    if isinstance(data__spec__arch, str):
                        if not REGEX_PATTERNS['^[a-z0-9_]{1,32}$'].search(data__spec__arch):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.arch must match pattern ^[a-z0-9_]{1,32}$", value=data__spec__arch, name="" + (name_prefix or "data") + ".spec.arch", definition={'type': 'string', 'pattern': '^[a-z0-9_]{1,32}$', 'description': "Default: the host's."}, rule='pattern')
                if "machine" in data__spec_keys:
                    data__spec_keys.remove("machine")
                    data__spec__machine = data__spec["machine"]
                    if not isinstance(data__spec__machine, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.machine must be string", value=data__spec__machine, name="" + (name_prefix or "data") + ".spec.machine", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Default: the hypervisor's default for arch."}, rule='type')
                    if isinstance(data__spec__machine, str):
                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'].search(data__spec__machine):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.machine must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", value=data__spec__machine, name="" + (name_prefix or "data") + ".spec.machine", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Default: the hypervisor's default for arch."}, rule='pattern')
                if "autostart" in data__spec_keys:
                    data__spec_keys.remove("autostart")
                    data__spec__autostart = data__spec["autostart"]
                    if not isinstance(data__spec__autostart, (bool)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.autostart must be boolean", value=data__spec__autostart, name="" + (name_prefix or "data") + ".spec.autostart", definition={'type': 'boolean', 'default': False}, rule='type')
                else: data__spec["autostart"] = False
                if "updatePolicy" in data__spec_keys:
                    data__spec_keys.remove("updatePolicy")
                    data__spec__updatePolicy = data__spec["updatePolicy"]
                    if not (isinstance(data__spec__updatePolicy, str) and data__spec__updatePolicy == 'restart' or isinstance(data__spec__updatePolicy, str) and data__spec__updatePolicy == 'next-boot'):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.updatePolicy must be one of ['restart', 'next-boot']", value=data__spec__updatePolicy, name="" + (name_prefix or "data") + ".spec.updatePolicy", definition={'enum': ['restart', 'next-boot'], 'default': 'restart'}, rule='enum')
                else: data__spec["updatePolicy"] = 'restart'
                if "stopTimeout" in data__spec_keys:
                    data__spec_keys.remove("stopTimeout")
                    data__spec__stopTimeout = data__spec["stopTimeout"]
                    if not isinstance(data__spec__stopTimeout, (int)) and not (isinstance(data__spec__stopTimeout, float) and data__spec__stopTimeout.is_integer()) or isinstance(data__spec__stopTimeout, bool):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.stopTimeout must be integer", value=data__spec__stopTimeout, name="" + (name_prefix or "data") + ".spec.stopTimeout", definition={'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, rule='type')
                    if isinstance(data__spec__stopTimeout, (int, float, Decimal)) and not isinstance(data__spec__stopTimeout, bool):
                        if data__spec__stopTimeout < 0:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.stopTimeout must be bigger than or equal to 0", value=data__spec__stopTimeout, name="" + (name_prefix or "data") + ".spec.stopTimeout", definition={'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, rule='minimum')
                        if data__spec__stopTimeout > 86400:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.stopTimeout must be smaller than or equal to 86400", value=data__spec__stopTimeout, name="" + (name_prefix or "data") + ".spec.stopTimeout", definition={'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, rule='maximum')
                else: data__spec["stopTimeout"] = 60
                if "adopt" in data__spec_keys:
                    data__spec_keys.remove("adopt")
                    data__spec__adopt = data__spec["adopt"]
                    if not isinstance(data__spec__adopt, (bool)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.adopt must be boolean", value=data__spec__adopt, name="" + (name_prefix or "data") + ".spec.adopt", definition={'type': 'boolean', 'default': False, 'description': 'May take over an existing domain that is not managed yet.'}, rule='type')
                else: data__spec["adopt"] = False
                if "suspend" in data__spec_keys:
                    data__spec_keys.remove("suspend")
                    data__spec__suspend = data__spec["suspend"]
                    if not isinstance(data__spec__suspend, (bool)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.suspend must be boolean", value=data__spec__suspend, name="" + (name_prefix or "data") + ".spec.suspend", definition={'type': 'boolean', 'default': False, 'description': 'Observe and report drift, change nothing.'}, rule='type')
                else: data__spec["suspend"] = False
                if "host" in data__spec_keys:
                    data__spec_keys.remove("host")
                    data__spec__host = data__spec["host"]
                    if not isinstance(data__spec__host, (str)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.host must be string", value=data__spec__host, name="" + (name_prefix or "data") + ".spec.host", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': 'The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection.'}, rule='type')
                    if isinstance(data__spec__host, str):
                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'].search(data__spec__host):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.host must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", value=data__spec__host, name="" + (name_prefix or "data") + ".spec.host", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': 'The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection.'}, rule='pattern')
                if "moveStrategy" in data__spec_keys:
                    data__spec_keys.remove("moveStrategy")
                    data__spec__moveStrategy = data__spec["moveStrategy"]
                    if not (isinstance(data__spec__moveStrategy, str) and data__spec__moveStrategy == 'cold' or isinstance(data__spec__moveStrategy, str) and data__spec__moveStrategy == 'live'):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.moveStrategy must be one of ['cold', 'live']", value=data__spec__moveStrategy, name="" + (name_prefix or "data") + ".spec.moveStrategy", definition={'enum': ['cold', 'live'], 'default': 'cold', 'description': 'How a change of host moves the VM: cold (stop, define on the target, start) or live (libvirt migration).'}, rule='enum')
                else: data__spec["moveStrategy"] = 'cold'
                if "disks" in data__spec_keys:
                    data__spec_keys.remove("disks")
                    data__spec__disks = data__spec["disks"]
                    if not isinstance(data__spec__disks, (list, tuple)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks must be array", value=data__spec__disks, name="" + (name_prefix or "data") + ".spec.disks", definition={'type': 'array', 'maxItems': 1024, 'items': {'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}}, rule='type')
                    data__spec__disks_is_list = isinstance(data__spec__disks, (list, tuple))
                    if data__spec__disks_is_list:
                        data__spec__disks_len = len(data__spec__disks)
                        if data__spec__disks_len > 1024:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks must contain less than or equal to 1024 items", value=data__spec__disks, name="" + (name_prefix or "data") + ".spec.disks", definition={'type': 'array', 'maxItems': 1024, 'items': {'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}}, rule='maxItems')
                        for data__spec__disks_x, data__spec__disks_item in enumerate(data__spec__disks):
                            if not isinstance(data__spec__disks_item, (dict)):
                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}]".format(**locals()) + " must be object", value=data__spec__disks_item, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}]".format(**locals()) + "", definition={'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}, rule='type')
                            data__spec__disks_item_is_dict = isinstance(data__spec__disks_item, dict)
                            if data__spec__disks_item_is_dict:
                                data__spec__disks_item__missing_keys = set(['source']) - data__spec__disks_item.keys()
                                if data__spec__disks_item__missing_keys:
                                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}]".format(**locals()) + " must contain " + (str(sorted(data__spec__disks_item__missing_keys)) + " properties"), value=data__spec__disks_item, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}]".format(**locals()) + "", definition={'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}, rule='required')
                                data__spec__disks_item_keys = set(data__spec__disks_item.keys())
                                if "source" in data__spec__disks_item_keys:
                                    data__spec__disks_item_keys.remove("source")
                                    data__spec__disks_item__source = data__spec__disks_item["source"]
                                    if not isinstance(data__spec__disks_item__source, (str)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + " must be string", value=data__spec__disks_item__source, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + "", definition={'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, rule='type')
                                    if isinstance(data__spec__disks_item__source, str):
                                        data__spec__disks_item__source_len = len(data__spec__disks_item__source)
                                        if data__spec__disks_item__source_len < 2:
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + " must be longer than or equal to 2 characters", value=data__spec__disks_item__source, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + "", definition={'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, rule='minLength')
                                        if data__spec__disks_item__source_len > 4096:
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + " must be shorter than or equal to 4096 characters", value=data__spec__disks_item__source, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + "", definition={'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, rule='maxLength')
                                        if not REGEX_PATTERNS['^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'].search(data__spec__disks_item__source):
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + " must match pattern ^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$", value=data__spec__disks_item__source, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].source".format(**locals()) + "", definition={'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, rule='pattern')
                                if "format" in data__spec__disks_item_keys:
                                    data__spec__disks_item_keys.remove("format")
                                    data__spec__disks_item__format = data__spec__disks_item["format"]
                                    if not (isinstance(data__spec__disks_item__format, str) and data__spec__disks_item__format == 'qcow2' or isinstance(data__spec__disks_item__format, str) and data__spec__disks_item__format == 'raw'):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].format".format(**locals()) + " must be one of ['qcow2', 'raw']", value=data__spec__disks_item__format, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].format".format(**locals()) + "", definition={'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, rule='enum')
                                else: data__spec__disks_item["format"] = 'qcow2'
                                if "target" in data__spec__disks_item_keys:
                                    data__spec__disks_item_keys.remove("target")
                                    data__spec__disks_item__target = data__spec__disks_item["target"]
                                    if not isinstance(data__spec__disks_item__target, (str)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].target".format(**locals()) + " must be string", value=data__spec__disks_item__target, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].target".format(**locals()) + "", definition={'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, rule='type')
                                    if isinstance(data__spec__disks_item__target, str):
                                        if not REGEX_PATTERNS['^(vd|sd|hd|xvd)[a-z]{1,2}$'].search(data__spec__disks_item__target):
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].target".format(**locals()) + " must match pattern ^(vd|sd|hd|xvd)[a-z]{1,2}$", value=data__spec__disks_item__target, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].target".format(**locals()) + "", definition={'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, rule='pattern')
                                if "bus" in data__spec__disks_item_keys:
                                    data__spec__disks_item_keys.remove("bus")
                                    data__spec__disks_item__bus = data__spec__disks_item["bus"]
                                    if not (isinstance(data__spec__disks_item__bus, str) and data__spec__disks_item__bus == 'virtio' or isinstance(data__spec__disks_item__bus, str) and data__spec__disks_item__bus == 'sata' or isinstance(data__spec__disks_item__bus, str) and data__spec__disks_item__bus == 'scsi' or isinstance(data__spec__disks_item__bus, str) and data__spec__disks_item__bus == 'ide'):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].bus".format(**locals()) + " must be one of ['virtio', 'sata', 'scsi', 'ide']", value=data__spec__disks_item__bus, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].bus".format(**locals()) + "", definition={'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, rule='enum')
                                else: data__spec__disks_item["bus"] = 'virtio'
                                if "readonly" in data__spec__disks_item_keys:
                                    data__spec__disks_item_keys.remove("readonly")
                                    data__spec__disks_item__readonly = data__spec__disks_item["readonly"]
                                    if not isinstance(data__spec__disks_item__readonly, (bool)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].readonly".format(**locals()) + " must be boolean", value=data__spec__disks_item__readonly, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}].readonly".format(**locals()) + "", definition={'type': 'boolean', 'default': False}, rule='type')
                                else: data__spec__disks_item["readonly"] = False
                                if data__spec__disks_item_keys:
                                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}]".format(**locals()) + " must not contain "+str(data__spec__disks_item_keys)+" properties", value=data__spec__disks_item, name="" + (name_prefix or "data") + ".spec.disks[{data__spec__disks_x}]".format(**locals()) + "", definition={'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}, rule='additionalProperties')
                if "interfaces" in data__spec_keys:
                    data__spec_keys.remove("interfaces")
                    data__spec__interfaces = data__spec["interfaces"]
                    if not isinstance(data__spec__interfaces, (list, tuple)):
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces must be array", value=data__spec__interfaces, name="" + (name_prefix or "data") + ".spec.interfaces", definition={'type': 'array', 'maxItems': 32, 'items': {'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}}, rule='type')
                    data__spec__interfaces_is_list = isinstance(data__spec__interfaces, (list, tuple))
                    if data__spec__interfaces_is_list:
                        data__spec__interfaces_len = len(data__spec__interfaces)
                        if data__spec__interfaces_len > 32:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces must contain less than or equal to 32 items", value=data__spec__interfaces, name="" + (name_prefix or "data") + ".spec.interfaces", definition={'type': 'array', 'maxItems': 32, 'items': {'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}}, rule='maxItems')
                        for data__spec__interfaces_x, data__spec__interfaces_item in enumerate(data__spec__interfaces):
                            if not isinstance(data__spec__interfaces_item, (dict)):
                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must be object", value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}, rule='type')
                            data__spec__interfaces_item_one_of_count1 = 0
                            if data__spec__interfaces_item_one_of_count1 < 2:
                                try:
                                    try:
                                        data__spec__interfaces_item_is_dict = isinstance(data__spec__interfaces_item, dict)
                                        if data__spec__interfaces_item_is_dict:
                                            data__spec__interfaces_item__missing_keys = set(['bridge']) - data__spec__interfaces_item.keys()
                                            if data__spec__interfaces_item__missing_keys:
                                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must contain " + (str(sorted(data__spec__interfaces_item__missing_keys)) + " properties"), value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'required': ['bridge']}, rule='required')
                                    except (JsonSchemaValueException, JsonSchemaValuesException): pass
                                    else:
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must NOT match a disallowed definition", value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'required': ['network'], 'not': {'required': ['bridge']}}, rule='not')
                                    data__spec__interfaces_item_is_dict = isinstance(data__spec__interfaces_item, dict)
                                    if data__spec__interfaces_item_is_dict:
                                        data__spec__interfaces_item__missing_keys = set(['network']) - data__spec__interfaces_item.keys()
                                        if data__spec__interfaces_item__missing_keys:
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must contain " + (str(sorted(data__spec__interfaces_item__missing_keys)) + " properties"), value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'required': ['network'], 'not': {'required': ['bridge']}}, rule='required')
                                    data__spec__interfaces_item_one_of_count1 += 1
                                except (JsonSchemaValueException, JsonSchemaValuesException): pass
                            if data__spec__interfaces_item_one_of_count1 < 2:
                                try:
                                    try:
                                        data__spec__interfaces_item_is_dict = isinstance(data__spec__interfaces_item, dict)
                                        if data__spec__interfaces_item_is_dict:
                                            data__spec__interfaces_item__missing_keys = set(['network']) - data__spec__interfaces_item.keys()
                                            if data__spec__interfaces_item__missing_keys:
                                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must contain " + (str(sorted(data__spec__interfaces_item__missing_keys)) + " properties"), value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'required': ['network']}, rule='required')
                                    except (JsonSchemaValueException, JsonSchemaValuesException): pass
                                    else:
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must NOT match a disallowed definition", value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'required': ['bridge'], 'not': {'required': ['network']}}, rule='not')
                                    data__spec__interfaces_item_is_dict = isinstance(data__spec__interfaces_item, dict)
                                    if data__spec__interfaces_item_is_dict:
                                        data__spec__interfaces_item__missing_keys = set(['bridge']) - data__spec__interfaces_item.keys()
                                        if data__spec__interfaces_item__missing_keys:
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must contain " + (str(sorted(data__spec__interfaces_item__missing_keys)) + " properties"), value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'required': ['bridge'], 'not': {'required': ['network']}}, rule='required')
                                    data__spec__interfaces_item_one_of_count1 += 1
                                except (JsonSchemaValueException, JsonSchemaValuesException): pass
                            if data__spec__interfaces_item_one_of_count1 != 1:
                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must be valid exactly by one definition" + (" (" + str(data__spec__interfaces_item_one_of_count1) + " matches found)"), value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}, rule='oneOf')
                            data__spec__interfaces_item_is_dict = isinstance(data__spec__interfaces_item, dict)
                            if data__spec__interfaces_item_is_dict:
                                data__spec__interfaces_item_keys = set(data__spec__interfaces_item.keys())
                                if "network" in data__spec__interfaces_item_keys:
                                    data__spec__interfaces_item_keys.remove("network")
                                    data__spec__interfaces_item__network = data__spec__interfaces_item["network"]
                                    if not isinstance(data__spec__interfaces_item__network, (str)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].network".format(**locals()) + " must be string", value=data__spec__interfaces_item__network, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].network".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='type')
                                    if isinstance(data__spec__interfaces_item__network, str):
                                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'].search(data__spec__interfaces_item__network):
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].network".format(**locals()) + " must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", value=data__spec__interfaces_item__network, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].network".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, rule='pattern')
                                if "bridge" in data__spec__interfaces_item_keys:
                                    data__spec__interfaces_item_keys.remove("bridge")
                                    data__spec__interfaces_item__bridge = data__spec__interfaces_item["bridge"]
                                    if not isinstance(data__spec__interfaces_item__bridge, (str)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].bridge".format(**locals()) + " must be string", value=data__spec__interfaces_item__bridge, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].bridge".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, rule='type')
                                    if isinstance(data__spec__interfaces_item__bridge, str):
                                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'].search(data__spec__interfaces_item__bridge):
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].bridge".format(**locals()) + " must match pattern ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$", value=data__spec__interfaces_item__bridge, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].bridge".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, rule='pattern')
                                if "mac" in data__spec__interfaces_item_keys:
                                    data__spec__interfaces_item_keys.remove("mac")
                                    data__spec__interfaces_item__mac = data__spec__interfaces_item["mac"]
                                    if not isinstance(data__spec__interfaces_item__mac, (str)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].mac".format(**locals()) + " must be string", value=data__spec__interfaces_item__mac, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].mac".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, rule='type')
                                    if isinstance(data__spec__interfaces_item__mac, str):
                                        if not REGEX_PATTERNS['^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'].search(data__spec__interfaces_item__mac):
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].mac".format(**locals()) + " must match pattern ^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$", value=data__spec__interfaces_item__mac, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].mac".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, rule='pattern')
                                if "model" in data__spec__interfaces_item_keys:
                                    data__spec__interfaces_item_keys.remove("model")
                                    data__spec__interfaces_item__model = data__spec__interfaces_item["model"]
                                    if not isinstance(data__spec__interfaces_item__model, (str)):
                                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].model".format(**locals()) + " must be string", value=data__spec__interfaces_item__model, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].model".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}, rule='type')
                                    if isinstance(data__spec__interfaces_item__model, str):
                                        if not REGEX_PATTERNS['^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$'].search(data__spec__interfaces_item__model):
                                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].model".format(**locals()) + " must match pattern ^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$", value=data__spec__interfaces_item__model, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}].model".format(**locals()) + "", definition={'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}, rule='pattern')
                                else: data__spec__interfaces_item["model"] = 'virtio'
                                if data__spec__interfaces_item_keys:
                                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + " must not contain "+str(data__spec__interfaces_item_keys)+" properties", value=data__spec__interfaces_item, name="" + (name_prefix or "data") + ".spec.interfaces[{data__spec__interfaces_x}]".format(**locals()) + "", definition={'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}, rule='additionalProperties')
                if data__spec_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must not contain "+str(data__spec_keys)+" properties", value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'type': 'object', 'additionalProperties': False, 'properties': {'state': {'description': 'What the domain should be.', 'enum': ['running', 'stopped', 'absent'], 'default': 'running'}, 'memory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'currentMemory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': 4096}, 'type': {'enum': ['kvm', 'qemu'], 'default': 'kvm'}, 'arch': {'type': 'string', 'pattern': '^[a-z0-9_]{1,32}$', 'description': "Default: the host's."}, 'machine': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Default: the hypervisor's default for arch."}, 'autostart': {'type': 'boolean', 'default': False}, 'updatePolicy': {'enum': ['restart', 'next-boot'], 'default': 'restart'}, 'stopTimeout': {'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, 'adopt': {'type': 'boolean', 'default': False, 'description': 'May take over an existing domain that is not managed yet.'}, 'suspend': {'type': 'boolean', 'default': False, 'description': 'Observe and report drift, change nothing.'}, 'host': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': 'The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection.'}, 'moveStrategy': {'enum': ['cold', 'live'], 'default': 'cold', 'description': 'How a change of host moves the VM: cold (stop, define on the target, start) or live (libvirt migration).'}, 'disks': {'type': 'array', 'maxItems': 1024, 'items': {'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}}, 'interfaces': {'type': 'array', 'maxItems': 32, 'items': {'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}}}, 'if': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, 'then': {}, 'else': {'required': ['memory', 'vcpus']}}, rule='additionalProperties')
            try:
                data__spec_is_dict = isinstance(data__spec, dict)
                if data__spec_is_dict:
                    data__spec__missing_keys = set(['state']) - data__spec.keys()
                    if data__spec__missing_keys:
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must contain " + (str(sorted(data__spec__missing_keys)) + " properties"), value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, rule='required')
                    data__spec_keys = set(data__spec.keys())
                    if "state" in data__spec_keys:
                        data__spec_keys.remove("state")
                        data__spec__state = data__spec["state"]
                        if not (isinstance(data__spec__state, str) and data__spec__state == 'absent'):
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.state must be same as const definition: absent", value=data__spec__state, name="" + (name_prefix or "data") + ".spec.state", definition={'const': 'absent'}, rule='const')
            except (JsonSchemaValueException, JsonSchemaValuesException):
                data__spec_is_dict = isinstance(data__spec, dict)
                if data__spec_is_dict:
                    data__spec__missing_keys = set(['memory', 'vcpus']) - data__spec.keys()
                    if data__spec__missing_keys:
                        raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must contain " + (str(sorted(data__spec__missing_keys)) + " properties"), value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'required': ['memory', 'vcpus']}, rule='required')
            else:
                pass
        if data_keys:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must not contain "+str(data_keys)+" properties", value=data, name="" + (name_prefix or "data") + "", definition={'$schema': 'https://json-schema.org/draft/2020-12/schema', '$id': 'https://reconcile.invalid/schemas/virtualmachine.schema.json', 'title': 'VirtualMachine', 'description': 'The desired state of one libvirt domain, as reconciled by `reconcile`.', 'type': 'object', 'additionalProperties': False, 'required': ['apiVersion', 'kind', 'metadata'], 'properties': {'apiVersion': {'const': 'reconcile/v1'}, 'kind': {'const': 'VirtualMachine'}, 'metadata': {'type': 'object', 'additionalProperties': False, 'required': ['name'], 'properties': {'name': {'description': 'The libvirt domain name.', 'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'uuid': {'description': 'Pins the domain UUID.', 'type': 'string', 'pattern': '^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}, 'labels': {'description': 'Free-form labels.', 'type': 'object', 'propertyNames': {'type': 'string', 'maxLength': 253}, 'additionalProperties': {'type': 'string', 'maxLength': 1024}}}}, 'spec': {'type': 'object', 'additionalProperties': False, 'properties': {'state': {'description': 'What the domain should be.', 'enum': ['running', 'stopped', 'absent'], 'default': 'running'}, 'memory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'currentMemory': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, 'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': 4096}, 'type': {'enum': ['kvm', 'qemu'], 'default': 'kvm'}, 'arch': {'type': 'string', 'pattern': '^[a-z0-9_]{1,32}$', 'description': "Default: the host's."}, 'machine': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': "Default: the hypervisor's default for arch."}, 'autostart': {'type': 'boolean', 'default': False}, 'updatePolicy': {'enum': ['restart', 'next-boot'], 'default': 'restart'}, 'stopTimeout': {'type': 'integer', 'minimum': 0, 'maximum': 86400, 'default': 60, 'description': 'Seconds of graceful shutdown before a hard destroy; 0 destroys at once.'}, 'adopt': {'type': 'boolean', 'default': False, 'description': 'May take over an existing domain that is not managed yet.'}, 'suspend': {'type': 'boolean', 'default': False, 'description': 'Observe and report drift, change nothing.'}, 'host': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$', 'description': 'The host the VM runs on: a name from hosts.yaml or --host NAME=URI. Default: the -c connection.'}, 'moveStrategy': {'enum': ['cold', 'live'], 'default': 'cold', 'description': 'How a change of host moves the VM: cold (stop, define on the target, start) or live (libvirt migration).'}, 'disks': {'type': 'array', 'maxItems': 1024, 'items': {'type': 'object', 'additionalProperties': False, 'required': ['source'], 'properties': {'source': {'type': 'string', 'minLength': 2, 'maxLength': 4096, 'pattern': '^/[^\\u0000-\\u001f\\u007f\\ud800-\\udfff\\ufffe\\uffff]*$'}, 'format': {'enum': ['qcow2', 'raw'], 'default': 'qcow2'}, 'target': {'type': 'string', 'pattern': '^(vd|sd|hd|xvd)[a-z]{1,2}$'}, 'bus': {'enum': ['virtio', 'sata', 'scsi', 'ide'], 'default': 'virtio'}, 'readonly': {'type': 'boolean', 'default': False}}}}, 'interfaces': {'type': 'array', 'maxItems': 32, 'items': {'type': 'object', 'additionalProperties': False, 'properties': {'network': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'}, 'bridge': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$'}, 'mac': {'type': 'string', 'pattern': '^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$'}, 'model': {'type': 'string', 'pattern': '^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$', 'default': 'virtio'}}, 'oneOf': [{'required': ['network'], 'not': {'required': ['bridge']}}, {'required': ['bridge'], 'not': {'required': ['network']}}]}}}, 'if': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, 'then': {}, 'else': {'required': ['memory', 'vcpus']}}}, 'if': {'not': {'properties': {'spec': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}}, 'required': ['spec']}}, 'then': {'required': ['spec']}, '$defs': {'memorySize': {'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}}}, rule='additionalProperties')
    try:
        try:
            data_is_dict = isinstance(data, dict)
            if data_is_dict:
                data__missing_keys = set(['spec']) - data.keys()
                if data__missing_keys:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'properties': {'spec': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}}, 'required': ['spec']}, rule='required')
                data_keys = set(data.keys())
                if "spec" in data_keys:
                    data_keys.remove("spec")
                    data__spec = data["spec"]
                    data__spec_is_dict = isinstance(data__spec, dict)
                    if data__spec_is_dict:
                        data__spec__missing_keys = set(['state']) - data__spec.keys()
                        if data__spec__missing_keys:
                            raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec must contain " + (str(sorted(data__spec__missing_keys)) + " properties"), value=data__spec, name="" + (name_prefix or "data") + ".spec", definition={'properties': {'state': {'const': 'absent'}}, 'required': ['state']}, rule='required')
                        data__spec_keys = set(data__spec.keys())
                        if "state" in data__spec_keys:
                            data__spec_keys.remove("state")
                            data__spec__state = data__spec["state"]
                            if not (isinstance(data__spec__state, str) and data__spec__state == 'absent'):
                                raise JsonSchemaValueException("" + (name_prefix or "data") + ".spec.state must be same as const definition: absent", value=data__spec__state, name="" + (name_prefix or "data") + ".spec.state", definition={'const': 'absent'}, rule='const')
        except (JsonSchemaValueException, JsonSchemaValuesException): pass
        else:
            raise JsonSchemaValueException("" + (name_prefix or "data") + " must NOT match a disallowed definition", value=data, name="" + (name_prefix or "data") + "", definition={'not': {'properties': {'spec': {'properties': {'state': {'const': 'absent'}}, 'required': ['state']}}, 'required': ['spec']}}, rule='not')
    except (JsonSchemaValueException, JsonSchemaValuesException):
        pass
    else:
        data_is_dict = isinstance(data, dict)
        if data_is_dict:
            data__missing_keys = set(['spec']) - data.keys()
            if data__missing_keys:
                raise JsonSchemaValueException("" + (name_prefix or "data") + " must contain " + (str(sorted(data__missing_keys)) + " properties"), value=data, name="" + (name_prefix or "data") + "", definition={'required': ['spec']}, rule='required')
    return data

def validate_https___reconcile_invalid_schemas_virtualmachine_schema_json___defs_memorysize(data, custom_formats={}, name_prefix=None):
    data_one_of_count2 = 0
    if data_one_of_count2 < 2:
        try:
            if not isinstance(data, (int)) and not (isinstance(data, float) and data.is_integer()) or isinstance(data, bool):
                raise JsonSchemaValueException("" + (name_prefix or "data") + " must be integer", value=data, name="" + (name_prefix or "data") + "", definition={'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, rule='type')
            if isinstance(data, (int, float, Decimal)) and not isinstance(data, bool):
                if data < 1:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + " must be bigger than or equal to 1", value=data, name="" + (name_prefix or "data") + "", definition={'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, rule='minimum')
                if data > 17179869184:
                    raise JsonSchemaValueException("" + (name_prefix or "data") + " must be smaller than or equal to 17179869184", value=data, name="" + (name_prefix or "data") + "", definition={'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, rule='maximum')
            data_one_of_count2 += 1
        except (JsonSchemaValueException, JsonSchemaValuesException): pass
    if data_one_of_count2 < 2:
        try:
            if not isinstance(data, (str)):
                raise JsonSchemaValueException("" + (name_prefix or "data") + " must be string", value=data, name="" + (name_prefix or "data") + "", definition={'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}, rule='type')
            if isinstance(data, str):
                if not REGEX_PATTERNS['^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'].search(data):
                    raise JsonSchemaValueException("" + (name_prefix or "data") + " must match pattern ^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$", value=data, name="" + (name_prefix or "data") + "", definition={'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}, rule='pattern')
            data_one_of_count2 += 1
        except (JsonSchemaValueException, JsonSchemaValuesException): pass
    if data_one_of_count2 != 1:
        raise JsonSchemaValueException("" + (name_prefix or "data") + " must be valid exactly by one definition" + (" (" + str(data_one_of_count2) + " matches found)"), value=data, name="" + (name_prefix or "data") + "", definition={'oneOf': [{'type': 'integer', 'minimum': 1, 'maximum': 17179869184, 'description': 'MiB'}, {'type': 'string', 'pattern': '^\\s*[0-9]+\\s*(K|KiB|M|MiB|G|GiB|T|TiB|KB|MB|GB|TB)?\\s*$'}]}, rule='oneOf')
    return data


validate = validate_https___reconcile_invalid_schemas_virtualmachine_schema_json
