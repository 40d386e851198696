"""The ``agentauthz`` command: one module per group of subcommands.

``_main`` parses arguments and dispatches; ``_author`` holds the policy-author
commands (validate, test, check, format); ``_avp`` push, pull and serve-avp;
``_replay`` re-decides audit logs; ``_console`` renders plain or colored output.
"""
