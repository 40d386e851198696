"""How a knowledge-base result's metadata becomes its Cedar resource (:class:`MetadataMapping`).

Shared by :class:`~agentauthz.integrations.bedrock.KnowledgeBaseRetriever`,
which builds each result's resource with it, and
:func:`~agentauthz.integrations.bedrock.retrieve_and_generate_filter`, whose
filter must keep exactly what that resource would be allowed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from agentauthz._errors import ConfigurationError
from agentauthz._model import Entity, EntityUID
from agentauthz.retrieval._expr import ANCESTORS

__all__ = [
    "CHUNK_ID_KEY",
    "SOURCE_URI_KEY",
    "MappingKeywords",
    "MetadataField",
    "MetadataMapping",
    "mapping_from_keywords",
]

SOURCE_URI_KEY = "x-amz-bedrock-kb-source-uri"
CHUNK_ID_KEY = "x-amz-bedrock-kb-chunk-id"


@dataclass(frozen=True)
class MetadataField:
    """Where a resource attribute lives in a knowledge-base result's metadata.

    Attributes:
        key: the metadata key (as set in the document's ``.metadata.json``).
        entity_type: when set, the metadata value is the id of an entity of
            this type (``"acme"`` -> ``Tenant::"acme"``).

    Example:
        >>> MetadataField("tenant_id", entity_type="Tenant").key
        'tenant_id'
    """

    key: str
    entity_type: str | None = None


@dataclass(frozen=True)
class MetadataMapping:
    """How a knowledge-base result's metadata becomes its Cedar resource.

    Attributes:
        resource_type: entity type of the resources.
        id_key: metadata key holding the resource id (default the source URI).
        attributes: Cedar attribute -> metadata key (or :class:`MetadataField`
            for entity-typed attributes); :attr:`fields` reads them as MetadataFields.
        ancestors_key: metadata key listing the Cedar text of every ancestor of
            the resource (``['Folder::"hr"', 'Folder::"root"']``): they become
            its parents, and ``resource in ...`` conditions can be pre-filtered.

    Raises:
        ConfigurationError: an attribute maps to neither a key nor a MetadataField.

    Example:
        >>> mapping = MetadataMapping(attributes={"department": "department"})
        >>> mapping.resource_of({"metadata": {SOURCE_URI_KEY: "s3://b/a.pdf", "department": "hr"}}).uid
        EntityUID(type='Document', id='s3://b/a.pdf')

    .. versionadded:: 0.2
    """

    resource_type: str = "Document"
    id_key: str = SOURCE_URI_KEY
    attributes: Mapping[str, str | MetadataField] = field(default_factory=dict, hash=False)
    ancestors_key: str | None = None
    _fields: dict[str, MetadataField] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        fields = {name: _field(spec) for name, spec in (self.attributes or {}).items()}
        object.__setattr__(self, "_fields", fields)

    @property
    def fields(self) -> dict[str, MetadataField]:
        """``attributes``, every value a :class:`MetadataField`."""
        return dict(self._fields)

    @property
    def keys(self) -> dict[str, str]:
        """Cedar resource attribute -> metadata key, as the pre-filter compiler wants them."""
        keys = {name: spec.key for name, spec in self.fields.items()}
        if self.ancestors_key is not None:
            keys[ANCESTORS] = self.ancestors_key
        return keys

    def resource_of(self, result: Mapping[str, Any]) -> Entity:
        """The Cedar resource of one ``retrievalResults`` item.

        Raises:
            KeyError, ValueError: the metadata lacks the id or an attribute (the
                item is then dropped by the filter).
        """
        metadata = result.get("metadata")
        if not isinstance(metadata, Mapping):
            raise KeyError("result has no metadata")
        resource_id = metadata[self.id_key]
        if not isinstance(resource_id, str) or not resource_id:
            raise ValueError(f"metadata {self.id_key!r} is not a resource id")
        attrs = {name: _cedar_value(metadata[spec.key], spec) for name, spec in self.fields.items()}
        parents: list[EntityUID] = []
        if self.ancestors_key is not None:
            ancestors = metadata[self.ancestors_key]  # missing: dropped (a forbid may need them)
            if not isinstance(ancestors, list) or not all(isinstance(a, str) for a in ancestors):
                raise ValueError(f"metadata {self.ancestors_key!r} is not a list of entity uids")
            parents = [EntityUID.parse(text) for text in ancestors]
        return Entity(uid=EntityUID(self.resource_type, resource_id), attrs=attrs, parents=parents)


class MappingKeywords(TypedDict, total=False):
    """The flat keywords :class:`MetadataMapping` replaces (deprecated)."""

    resource_type: str
    id_key: str
    attributes: Mapping[str, str | MetadataField] | None
    ancestors_key: str | None


def mapping_from_keywords(owner: str, metadata: MetadataMapping | None,
                          keywords: Mapping[str, Any]) -> MetadataMapping:
    """``metadata``, or the mapping the deprecated flat ``keywords`` describe (with a DeprecationWarning).

    Raises:
        ConfigurationError: flat keywords next to ``metadata=``.
    """
    if not keywords:
        return metadata if metadata is not None else MetadataMapping()
    names = ", ".join(f"{name}=" for name in keywords)
    if metadata is not None:
        raise ConfigurationError(f"{owner}: {names} and metadata= both given: set them in metadata=")
    replacement = ", ".join(f"{name}=..." for name in keywords)
    warnings.warn(f"{owner}({names}) is deprecated: use metadata=MetadataMapping({replacement})",
                  DeprecationWarning, stacklevel=3)
    settings = dict(keywords)
    settings["attributes"] = settings.get("attributes") or {}
    return MetadataMapping(**settings)


def _field(spec: str | MetadataField) -> MetadataField:
    if isinstance(spec, MetadataField):
        return spec
    if isinstance(spec, str):
        return MetadataField(spec)
    raise ConfigurationError(f"an attribute maps to a metadata key or MetadataField, not {spec!r}")


def _cedar_value(value: Any, spec: MetadataField) -> Any:
    """A metadata value as the Python value of a Cedar attribute."""
    if spec.entity_type is not None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"metadata {spec.key!r} is not an entity id")
        return EntityUID(spec.entity_type, value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the service returns numbers as JSON numbers; Cedar has Long only
    if isinstance(value, list):
        return [_cedar_value(item, MetadataField(spec.key)) for item in value]
    return value
