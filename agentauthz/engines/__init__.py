"""Authorization backends behind one protocol (:class:`~agentauthz.Engine`)."""
