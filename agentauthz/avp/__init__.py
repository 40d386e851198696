"""Amazon Verified Permissions: the engine, push/pull, the local endpoint, tokens.

``_engine`` (:class:`~agentauthz.VerifiedPermissionsEngine`) decides through boto3,
with its options in ``_options`` and its answers checked in ``_exchange``;
``_wire`` converts requests and entities to AVP shapes; ``_sync`` pushes and
pulls policy stores; ``_synced`` (:class:`~agentauthz.SyncedEngine`) decides on an in-process
copy of one, refreshed in the background; ``_server`` is the AVP-compatible local endpoint
(:class:`agentauthz.testing.LocalVerifiedPermissions`), answering with
``_backend``'s operations (identity sources from ``_identity_sources``, errors
and request members from ``_service``) and injecting ``_faults``; ``_tokens``
verifies JWTs and maps their claims like AVP identity sources
(:class:`~agentauthz.TokenIdentity`).
"""
