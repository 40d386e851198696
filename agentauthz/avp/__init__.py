"""Amazon Verified Permissions: the engine, push/pull, the local endpoint, tokens.

``_engine`` (:class:`~agentauthz.VerifiedPermissionsEngine`) decides through boto3;
``_wire`` converts requests and entities to AVP shapes; ``_sync`` pushes and pulls
policy stores; ``_server`` and ``_identity`` are the AVP-compatible local endpoint
(:class:`agentauthz.testing.LocalVerifiedPermissions`); ``_tokens`` verifies JWTs and
maps their claims like AVP identity sources (:class:`~agentauthz.TokenIdentity`).
"""
