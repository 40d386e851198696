"""Retrieval: deciding which retrieved items the end user may see.

``_filter`` groups items by resource for :meth:`~agentauthz.Authorizer.filter`;
``_prefilter`` compiles the policies into vector-store metadata filters
(:func:`~agentauthz.compile_prefilter`); ``_overfetch`` fetches more candidates
when post-filtering removes some.
"""
