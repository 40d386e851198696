"""Policy stores: loading files, Cedar text, schemas, slicing, formatting and lint.

The wing every engine reads: :class:`~agentauthz.PolicyStore` (``_store``) loads a
directory or text into pre-parsed handles; ``_text`` splits Cedar text into statements
(file:line, nesting checks); ``_schema_json`` and ``_schema_types`` read schemas;
``_slicing`` indexes policies by scope; ``_format`` and ``_lint`` serve the command line.
"""
