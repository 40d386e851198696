"""Retrieval: deciding which retrieved items the end user may see.

``_filter`` groups items by resource for :meth:`~agentauthz.Authorizer.filter`;
``_prefilter`` compiles the policies into vector-store metadata filters
(:func:`~agentauthz.compile_prefilter`): ``_residuals`` translates the residual
policies into an expression (``_expr``), which ``_dialects`` renders for Bedrock
and Mongo-style stores and ``_predicate`` evaluates over metadata;
``_overfetch`` fetches more candidates when post-filtering removes some.
"""
