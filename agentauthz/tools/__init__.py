"""Tools: what a tool call is in Cedar, and the schema of tool actions.

``_spec`` turns a function or a JSON schema into a :class:`~agentauthz.ToolSpec`
(argument validation, Cedar types, the refusal text); ``_schema`` generates and
checks the Cedar schema of tool actions (``agentauthz schema generate``,
``Authorizer.validate_tools``).
"""
